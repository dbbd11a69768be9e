"""Placeholder: sub-commands of this area are added here."""


def add_parsers(sub, eval_parser) -> None:
    return None
