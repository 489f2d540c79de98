"""Differentially private training (DP-SGD through Opacus, the `privacy` extra): the recipe-wide
budget and its ledger (budget.py), and the training loop and layer checks (dpsgd.py). Opacus is
imported only inside the functions that need it."""
