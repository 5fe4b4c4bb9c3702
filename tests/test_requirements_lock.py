"""infra/requirements.lock against infra/requirements.txt and the Makefile, without services.

`make install` installs from the lock with pip --require-hashes, so the lock is what every
machine gets. These tests fail when someone edits requirements.txt without `make lock`, when
the lock carries an entry pip would refuse in hash mode, or when the install rule stops
using the lock.
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from dataclasses import dataclass
from functools import cache

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from lakehouse.settings import PROJECT_ROOT

REQUIREMENTS_FILE = PROJECT_ROOT / "infra" / "requirements.txt"
LOCK_PATH = "infra/requirements.lock"
LOCK_FILE = PROJECT_ROOT / LOCK_PATH
LOCK_SCRIPT = "infra/lock_requirements.sh"
MAKEFILE = PROJECT_ROOT / "Makefile"
PYPROJECT = PROJECT_ROOT / "pyproject.toml"

# The one platform the lock is compiled for; markers in requirements.txt are judged on it.
TARGET_ENVIRONMENT = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
}
TARGET_COMPILE_FLAGS = (
    "--generate-hashes",
    "--python-version 3.11",
    "--python-platform x86_64-unknown-linux-gnu",
)
# pip's comment rule: '#' at the start of a line or after whitespace; not inside a URL.
COMMENT = re.compile(r"(^|\s)#.*$")
SHA256_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class LockEntry:
    line_number: int
    line: str
    requirement: str
    options: tuple[str, ...]

    @property
    def hashes(self) -> list[str]:
        return [o for o in self.options if SHA256_HASH.fullmatch(o)]


def strip_comment(line: str) -> str:
    return COMMENT.sub("", line).strip()


def lock_text() -> str:
    assert LOCK_FILE.is_file(), f"{LOCK_FILE} is missing: run `make lock`"
    return LOCK_FILE.read_text()


@cache
def lock_entries() -> tuple[LockEntry, ...]:
    """The lock's logical lines (backslash continuations joined), comments dropped."""
    entries: list[LockEntry] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(lock_text().splitlines(), start=1):
        if not pending:
            start = number
        continued = raw.rstrip().endswith("\\")
        pending.append(strip_comment(raw.rstrip().removesuffix("\\")))
        if continued:
            continue
        tokens = " ".join(pending).split()
        pending = []
        if tokens:
            words = [t for t in tokens if not t.startswith("-")]
            options = tuple(t for t in tokens if t.startswith("-"))
            entries.append(LockEntry(start, " ".join(tokens), " ".join(words), options))
    return tuple(entries)


def exact_pin(entry: LockEntry) -> tuple[NormalizedName, Version] | None:
    """(name, version) when the entry is a plain `name==version`, else None."""
    try:
        requirement = Requirement(entry.requirement)
    except InvalidRequirement:  # an option's argument, such as the path of `-e .`
        return None
    specifiers = list(requirement.specifier)
    if requirement.url or len(specifiers) != 1:
        return None
    (specifier,) = specifiers
    if specifier.operator != "==" or specifier.version.endswith(".*"):
        return None
    return canonicalize_name(requirement.name), Version(specifier.version)


@cache
def locked_versions() -> dict[NormalizedName, list[Version]]:
    versions: dict[NormalizedName, list[Version]] = {}
    for entry in lock_entries():
        pin = exact_pin(entry)
        if pin:
            versions.setdefault(pin[0], []).append(pin[1])
    return versions


def declared_requirements() -> list[Requirement]:
    requirements = []
    for number, raw in enumerate(REQUIREMENTS_FILE.read_text().splitlines(), start=1):
        line = strip_comment(raw)
        if not line:
            continue
        # An option (-r, -c, --index-url) would change what the lock means: this test reads none.
        assert not line.startswith("-"), f"requirements.txt:{number}: option {line!r} not handled"
        requirements.append(Requirement(line))
    return requirements


def makefile_rule(target: str) -> tuple[str, list[str]]:
    """The prerequisites and recipe lines of `target`, with the Makefile's variables expanded."""
    text = MAKEFILE.read_text()
    variables = dict(re.findall(r"^([A-Z_]+)\s*[:?]?=\s*(.*?)\s*$", text, flags=re.MULTILINE))

    def expand(value: str) -> str:
        for _ in range(5):  # variables may name variables
            value = re.sub(r"\$\(([A-Z_]+)\)", lambda m: variables.get(m[1], m[0]), value)
        return value

    lines = text.splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith(f"{target}:")), None)
    assert header is not None, f"the Makefile has no {target!r} rule"
    prerequisites = lines[header].split(":", 1)[1].split("##", 1)[0]
    recipe = []
    for line in lines[header + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(expand(line.strip()))
    return expand(prerequisites), recipe


def test_lock_pins_every_declared_requirement_once_within_its_specifier():
    versions = locked_versions()
    problems = []
    for requirement in declared_requirements():
        if requirement.marker and not requirement.marker.evaluate(TARGET_ENVIRONMENT):
            continue
        name = canonicalize_name(requirement.name)
        pins = versions.get(name, [])
        if len(pins) != 1:
            problems.append(f"{requirement}: {len(pins)} pins in the lock, want exactly one")
        elif not requirement.specifier.contains(pins[0], prereleases=True):
            problems.append(f"{requirement}: the lock pins {pins[0]}, outside the specifier")
    assert not problems, "lock drifted from requirements.txt (run `make lock`):\n" + "\n".join(
        problems
    )


def test_every_lock_entry_is_a_hashed_exact_pin():
    entries = lock_entries()
    assert entries, f"{LOCK_FILE} pins nothing"
    problems = []
    for entry in entries:
        text = f"line {entry.line_number}: {entry.line[:100]}"
        if exact_pin(entry) is None:
            problems.append(f"{text}: not a plain name==version pin")
        elif not entry.hashes:
            problems.append(f"{text}: no --hash=sha256 (pip --require-hashes refuses it)")
        elif len(entry.hashes) != len(entry.options):
            problems.append(f"{text}: options other than sha256 hashes: {entry.options}")
    assert not problems, "\n".join(problems)


def test_lock_has_no_duplicate_pins_and_not_the_project_itself():
    names = [pin[0] for entry in lock_entries() if (pin := exact_pin(entry))]
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    assert not duplicates, f"pinned more than once: {duplicates}"
    project = canonicalize_name(tomllib.loads(PYPROJECT.read_text())["project"]["name"])
    # The project installs editable from the checkout; a pin of it would fetch another copy.
    assert project not in names


def test_lock_header_names_its_generator_and_target_platform():
    header = "\n".join(line for line in lock_text().splitlines()[:5] if line.startswith("#"))
    assert LOCK_SCRIPT in header, f"the lock's header should say it comes from {LOCK_SCRIPT}"
    for flag in TARGET_COMPILE_FLAGS:
        assert flag in header, f"the lock's header lacks {flag!r}: compiled for another target?"
    script = (PROJECT_ROOT / LOCK_SCRIPT).read_text()
    for flag in TARGET_COMPILE_FLAGS:
        assert re.search(r"\s+".join(map(re.escape, flag.split())), script), flag


def test_make_install_installs_from_the_lock_with_hashes():
    prerequisites, recipe = makefile_rule("$(STAMP)")
    assert LOCK_PATH in prerequisites.split(), "a changed lock should make `make install` rerun"
    lock_install = rf"\bpip install\b.*--require-hashes\b.*\s-r\s+{re.escape(LOCK_PATH)}(\s|$)"
    assert any(re.search(lock_install, line) for line in recipe), recipe
    # Installing requirements.txt as well would resolve afresh and undo the lock.
    assert not any(re.search(r"\s-r\s+\S*requirements\.txt\b", line) for line in recipe), recipe


def test_make_lock_runs_the_lock_script():
    _, recipe = makefile_rule("lock")
    assert any(LOCK_SCRIPT in line for line in recipe), recipe
