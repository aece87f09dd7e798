"""Safe YAML loading for files that may hold secrets (kubeconfigs, static pod manifests).

Why ruamel.yaml and not PyYAML: edgecheck ships as one zipapp per CPU architecture for every
CPython >= 3.9 (packaging/build_zipapp.py), which only takes pure-Python (`none`) or stable-ABI
(`abi3`) wheels. PyYAML publishes only per-CPython-version wheels (cp39, cp310, ...) besides its
sdist, so it cannot be bundled that way; ruamel.yaml (>= 0.17, pure Python, MIT, maintained)
can, and its C loader is optional. Its "safe" loader builds plain dicts, lists and scalars
only: no tag can construct a Python object.

It is imported lazily, on the first file loaded, so `edgecheck --help` does not pay for it.

Error messages never quote the document: a parser's message normally carries a snippet of the
offending line and, for a duplicate key, both values, and in a kubeconfig those may be a token.
Only the line, the column and the parser's wording with every quoted part cut out are kept.
"""

from __future__ import annotations

import re
from typing import Any

# A kubeconfig or manifest is kilobytes; anything this large is not one (and is not read whole).
MAX_YAML_BYTES = 4 * 1024 * 1024

_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")


class YamlError(ValueError):
    """The text is not YAML; the message is one line without any content from the document."""


def parse_yaml(text: str) -> Any:
    """The document as plain Python data (dict, list, str, int, float, bool, None)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    loader = YAML(typ="safe", pure=True)
    try:
        return loader.load(text)
    except MarkedYAMLError as exc:
        raise YamlError(_describe(exc.problem or exc.context or "syntax error", exc.problem_mark)) from None
    except YAMLError as exc:
        if type(exc).__name__ == "ReaderError":
            raise YamlError("YAML error: the text holds control characters YAML does not allow") from None
        raise YamlError(f"YAML error ({type(exc).__name__})") from None
    except RecursionError:
        raise YamlError("YAML nesting too deep") from None


def read_yaml_file(path: str) -> Any:
    """Read and parse one file. OSError when it cannot be read; YamlError when it is not YAML."""
    with open(path, "rb") as fh:
        data = fh.read(MAX_YAML_BYTES + 1)
    if len(data) > MAX_YAML_BYTES:
        raise YamlError(f"larger than {MAX_YAML_BYTES // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise YamlError(f"not UTF-8 text (byte {exc.start})") from None
    return parse_yaml(text)


def _describe(problem: str, mark: Any) -> str:
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"YAML error{where}: {_QUOTED.sub('…', problem)}"
