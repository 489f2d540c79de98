"""`edgeopt batch`: many recipes and user models x several targets as tasks on an executor."""
