"""`{{SECRET_NAME}}` references in MCP server definitions: find them, check them, fill them in.

Rendering is one regex pass, so a secret value that itself contains `{{...}}` is inserted as
is and never expanded again. A reference whose secret is missing is never left as literal
text: `render` refuses rather than substitute.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from optio.secrets import NAME_RE

# Whatever sits between a pair of double braces; checked against the secret-name rule separately,
# so a typo such as {{GITHUB-TOKEN}} is reported instead of reaching the agent as literal text.
_BRACES = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


class InvalidReference(ValueError):
    pass


class MissingSecrets(LookupError):
    def __init__(self, names: Iterable[str]):
        self.names = sorted(set(names))
        super().__init__(", ".join(self.names))


def references(value: str) -> list[str]:
    """Secret names referenced in `value`, in order of first appearance. Raises InvalidReference."""
    names: list[str] = []
    for match in _BRACES.finditer(value):
        name = match.group(1).strip()
        if not NAME_RE.match(name):
            raise InvalidReference(
                f"{match.group(0)!r} is not a secret reference: write {{{{SECRET_NAME}}}} with a name made of "
                "letters, digits and underscores (for example {{GITHUB_TOKEN}})."
            )
        if name not in names:
            names.append(name)
    if "{{" in _BRACES.sub("", value):
        raise InvalidReference(f"{value!r} has an unclosed '{{{{'; a secret reference looks like {{{{SECRET_NAME}}}}.")
    return names


def references_in(values: Iterable[str]) -> list[str]:
    """Every secret named in `values`, sorted (env and headers are JSON objects, whose key order
    PostgreSQL does not keep, so order of appearance would differ between databases)."""
    return sorted({name for value in values for name in references(value)})


def strip_references(value: str) -> str:
    """`value` without its references (to inspect the literal text around them)."""
    return _BRACES.sub("", value)


def render(value: str, secrets: Mapping[str, str]) -> str:
    """`value` with every reference replaced by its secret. Raises MissingSecrets naming all absent ones."""
    missing = [name for name in references(value) if name not in secrets]
    if missing:
        raise MissingSecrets(missing)
    return _BRACES.sub(lambda m: secrets[m.group(1).strip()], value)
