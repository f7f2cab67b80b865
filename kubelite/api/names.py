"""Kubernetes' rules for names, keys and label values, exactly as apimachinery checks them.

Owns: the predicates of `k8s.io/apimachinery/pkg/util/validation` (and `api/validate/content`)
that a manifest meets: `IsDNS1123Label`, `IsDNS1123Subdomain`, `IsQualifiedName` (label and
annotation keys), `IsValidLabelValue`, `IsConfigMapKey`, `IsRelaxedEnvVarName`,
`IsValidPortName`, the annotations' total size, kubelite's own rule for a `metadata.uid` (it
names directories and cgroups here), and the hostname a pod's name gives. Each predicate returns kubectl's messages
for a value, empty when the value is valid.

How, so that nothing slips through: every pattern matches the whole string (`re.fullmatch`; never
`re.match` with `$`, which matches before a trailing newline); character classes are explicit
ASCII ranges (never `\\d` or `\\w`, which match any Unicode digit or letter, and never
IGNORECASE, under which the Kelvin sign matches `k`); lengths are counted in UTF-8 bytes, as Go's
`len`. Pure; never echoes a value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

DNS1123_LABEL_MAX_LENGTH = 63
DNS1123_SUBDOMAIN_MAX_LENGTH = 253
LABEL_KEY_NAME_MAX_LENGTH = 63
LABEL_VALUE_MAX_LENGTH = 63
PORT_NAME_MAX_LENGTH = 15
UID_MAX_LENGTH = 128
#: `TotalAnnotationSizeLimitB`: keys and values of all annotations together, in bytes.
TOTAL_ANNOTATION_SIZE = 256 * 1024

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + r"(\." + DNS1123_LABEL_FMT + ")*"
LABEL_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE_FMT = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
UID_FMT = "[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?"

DNS1123_LABEL = re.compile(DNS1123_LABEL_FMT)
DNS1123_SUBDOMAIN = re.compile(DNS1123_SUBDOMAIN_FMT)
LABEL_KEY = re.compile(LABEL_KEY_FMT)
LABEL_VALUE = re.compile(LABEL_VALUE_FMT)
CONFIG_KEY = re.compile(CONFIG_KEY_FMT)
UID = re.compile(UID_FMT)
PORT_NAME_CHARSET = re.compile("[-a-z0-9]+")
_LOWER_LETTER = re.compile("[a-z]")

DNS1123_LABEL_MESSAGE = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                         "and must start and end with an alphanumeric character")
DNS1123_SUBDOMAIN_MESSAGE = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                             "'-' or '.', and must start and end with an alphanumeric character")
LABEL_KEY_MESSAGE = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                     "alphanumeric character")
LABEL_VALUE_MESSAGE = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
                       "'.', and must start and end with an alphanumeric character")
CONFIG_KEY_MESSAGE = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
ENV_VAR_NAME_MESSAGE = ("a valid environment variable name must consist only of printable ASCII characters other "
                        "than '='")


def regex_error(message: str, fmt: str, *examples: str) -> str:
    """apimachinery's `RegexError`: the rule, examples, and the pattern it is checked with."""
    listed = "".join((" or " if i else "") + f"'{e}', " for i, e in enumerate(examples))
    return f"{message} ({'e.g. ' + listed if examples else ''}regex used for validation is '{fmt}')"


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def _len(value: str) -> int:
    """Go's `len`: bytes of UTF-8."""
    return len(value.encode("utf-8", "surrogatepass"))


def is_dns1123_label(value: str) -> list[str]:
    errors = []
    if _len(value) > DNS1123_LABEL_MAX_LENGTH:
        errors.append(max_len_error(DNS1123_LABEL_MAX_LENGTH))
    if not DNS1123_LABEL.fullmatch(value):
        if DNS1123_SUBDOMAIN.fullmatch(value):
            errors.append("must not contain dots")
        else:
            errors.append(regex_error(DNS1123_LABEL_MESSAGE, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errors


def is_dns1123_subdomain(value: str) -> list[str]:
    errors = []
    if _len(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errors.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not DNS1123_SUBDOMAIN.fullmatch(value):
        errors.append(regex_error(DNS1123_SUBDOMAIN_MESSAGE, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errors


def is_qualified_name(value: str) -> list[str]:
    """A label key (or, lower-cased, an annotation key): `[prefix/]name`, the prefix a DNS subdomain."""
    errors: list[str] = []
    parts = value.split("/")
    if len(parts) > 2:
        return ["a valid label key " + regex_error(LABEL_KEY_MESSAGE, LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors += ["prefix part " + m for m in is_dns1123_subdomain(prefix)]
    if not name:
        errors.append("name part must be non-empty")
    elif _len(name) > LABEL_KEY_NAME_MAX_LENGTH:
        errors.append("name part " + max_len_error(LABEL_KEY_NAME_MAX_LENGTH))
    if not LABEL_KEY.fullmatch(name):
        errors.append("name part " + regex_error(LABEL_KEY_MESSAGE, LABEL_KEY_FMT, "MyName", "my.name", "123-abc"))
    return errors


def is_label_value(value: str) -> list[str]:
    errors = []
    if _len(value) > LABEL_VALUE_MAX_LENGTH:
        errors.append(max_len_error(LABEL_VALUE_MAX_LENGTH))
    if not LABEL_VALUE.fullmatch(value):
        errors.append(regex_error(LABEL_VALUE_MESSAGE, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errors


def _chdir_prefix(value: str) -> list[str]:
    """`hasChDirPrefix`: what would name the directory itself or its parent."""
    if value == ".":
        return ["must not be '.'"]
    if value == "..":
        return ["must not be '..'"]
    if value.startswith(".."):
        return ["must not start with '..'"]
    return []


def is_config_map_key(value: str) -> list[str]:
    """A key of a ConfigMap's or Secret's data (also `configMapKeyRef.key`, `secretKeyRef.key`)."""
    errors = []
    if _len(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errors.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not CONFIG_KEY.fullmatch(value):
        errors.append(regex_error(CONFIG_KEY_MESSAGE, CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    return errors + _chdir_prefix(value)


def is_env_var_name(value: str) -> list[str]:
    """`IsRelaxedEnvVarName` (the rule since RelaxedEnvironmentVariableValidation went GA in 1.34):
    non-empty, printable ASCII (space included), no '='."""
    errors = []
    if not value:
        errors.append("environment variable name must be non-empty")
    if any(not " " <= c <= "~" or c == "=" for c in value):
        errors.append(ENV_VAR_NAME_MESSAGE)
    return errors


def is_port_name(value: str) -> list[str]:
    """`IsValidPortName` (an IANA_SVC_NAME, lower case only): every rule broken, in apimachinery's order."""
    errors = []
    if _len(value) > PORT_NAME_MAX_LENGTH:
        errors.append(max_len_error(PORT_NAME_MAX_LENGTH))
    if not PORT_NAME_CHARSET.fullmatch(value):
        errors.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _LOWER_LETTER.search(value):
        errors.append("must contain at least one letter (a-z)")
    if "--" in value:
        errors.append("must not contain consecutive hyphens")
    if value and (value[0] == "-" or value[-1] == "-"):
        errors.append("must not begin or end with a hyphen")
    return errors


def is_uid(value: str) -> list[str]:
    """kubelite's rule for `metadata.uid` (Kubernetes sets no format; here it names directories):
    at most 128 characters of a-z, A-Z, 0-9, '-', '_' and '.', starting and ending with a letter or
    digit, no '..'."""
    if _len(value) > UID_MAX_LENGTH or not UID.fullmatch(value) or ".." in value:
        return ["must be at most 128 characters of a-z, A-Z, 0-9, '-', '_' and '.', starting and ending with "
                "a letter or digit"]
    return []


def pod_hostname(name: str) -> str:
    """The hostname of a pod without `spec.hostname`: its name, cut to 63 characters and then of any
    trailing '-' or '.' (the kubelet's `truncatePodHostnameIfNeeded`; a name may have 253)."""
    return name if len(name) <= DNS1123_LABEL_MAX_LENGTH else name[:DNS1123_LABEL_MAX_LENGTH].rstrip("-.")


def go_lower(value: str) -> str:
    """Go's `strings.ToLower`: the simple, one-to-one case mapping of each character.

    Python's `str.lower` uses the full mapping, which differs where it matters here: Go maps 'İ'
    (U+0130) to 'i' where Python gives 'i' and a combining dot. (Both map the Kelvin sign to 'k'.)
    """
    return "".join("i" if c == "\u0130" else c.lower() for c in value)


def is_annotation_key(key: str) -> list[str]:
    """`ValidateAnnotations`: a qualified name once lower-cased (so the case of letters is free)."""
    return is_qualified_name(go_lower(key))


def annotations_size(annotations: Mapping[str, str]) -> int:
    return sum(_len(k) + _len(v) for k, v in annotations.items())


def shown(key: str, *, limit: int = 0) -> str:
    """A document's key as it may appear in a field path: as written if it is printable ASCII (no
    brackets, quotes or backslashes), else quoted and escaped as JSON, so that a message stays one
    line of plain text. `limit` shortens a long key (`abc...`)."""
    if limit and len(key) > limit:
        key = key[:limit] + "..."
    if key and all(" " <= c <= "~" for c in key) and not any(c in key for c in "[]\"\\") and key.strip() == key:
        return key
    return json.dumps(key, ensure_ascii=True)
