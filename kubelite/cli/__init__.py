"""The kubectl-shaped command line. Imports are lazy: `get pods` must not load pydantic or SQLAlchemy."""
