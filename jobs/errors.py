"""Exceptions the CLI maps to exit codes; kept import-light so `biomed validate` stays instant."""


class TrainingFailed(RuntimeError):
    """The Ray Train run ended with an error after using up its failure budget."""
