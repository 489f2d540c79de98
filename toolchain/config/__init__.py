"""Configuration as data: recipes, target profiles and budgets, each with a schema_version."""
