"""The kubectl-shaped command line: the entry point above every other package. Imports are lazy:
`get pods` must not load pydantic or SQLAlchemy; kubectl's printing rules are `kubelite.kubectl`."""
