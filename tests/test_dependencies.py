"""Every third-party import is a declared dependency, and the locks pin what pyproject declares.

The product (pipeline/, subscribers/) may import only the standard library, its own
packages and `[project] dependencies`; bench/ and tests/ may also use the `dev` extra.
Import names are mapped to the distributions that provide them with
importlib.metadata.packages_distributions() (`yaml` -> PyYAML, `PIL` -> pillow), so a
module that only arrives as someone else's dependency (idna, markupsafe, werkzeug) fails
here, naming the file, the line and the package to declare. The locks
(requirements-dev.lock, installed by `make install`; requirements.lock, the same pins
without the dev tools) must pin every declared package within its bounds, with hashes, and
this environment must hold exactly the locked versions.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
DEV_LOCK = REPO / "requirements-dev.lock"
DEFAULT_LOCK = REPO / "requirements.lock"
PRODUCT = ("pipeline", "subscribers")
DEV_TREES = ("bench", "tests")
DEFAULT_WHERE = "[project] dependencies"
DEV_WHERE = "[project] dependencies or the dev extra"


def requirements(key: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    if key == "default":
        return [Requirement(r) for r in project["dependencies"]]
    if key == "build":
        return [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    return [Requirement(r) for r in project["optional-dependencies"][key]]


def names(reqs: Iterable[Requirement]) -> set[str]:
    return {canonicalize_name(r.name) for r in reqs}


# ---- imports ------------------------------------------------------------------------------


def guarded_by_import_error(node: ast.Try) -> bool:
    """`try: import x / except ImportError:` is an optional import, not a dependency."""
    caught: list[ast.expr] = []
    for handler in node.handlers:
        if handler.type is None:
            continue
        caught.extend(handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type])
    return any(isinstance(c, ast.Name) and c.id.endswith("ImportError") for c in caught) or any(
        isinstance(c, ast.Name) and c.id == "ModuleNotFoundError" for c in caught
    )


def absolute_imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, top-level module) of each absolute import, optional ones left out."""
    optional: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and guarded_by_import_error(node):
            optional.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.partition(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.partition(".")[0]


def local_modules(root: Path, file: Path) -> set[str]:
    """The repository's own top-level packages and modules, and, for a file in a folder that
    is not a package (tests/: pytest puts it on sys.path), the modules beside it. In a
    package, `import requests` is the library even beside a requests.py."""
    top = {p.parent.name for p in root.glob("*/__init__.py")} | {p.stem for p in root.glob("*.py")}
    here: set[str] = set()
    if not (file.parent / "__init__.py").exists():
        here = {p.stem for p in file.parent.glob("*.py")} | {
            p.parent.name for p in file.parent.glob("*/__init__.py")
        }
    return here | top | set(PRODUCT) | set(DEV_TREES)


@dataclass
class ImportCheck:
    """Finds imports of modules that no declared distribution provides."""

    root: Path
    allowed: set[str]  # canonical distribution names
    where: str  # where in pyproject.toml to declare one
    provides: Mapping[str, list[str]] = field(default_factory=packages_distributions)

    def problems(self, trees: Iterable[str]) -> list[str]:
        found = []
        for tree in trees:
            for file in sorted((self.root / tree).rglob("*.py")):
                found.extend(self.problems_in(file))
        return found

    def problems_in(self, file: Path) -> list[str]:
        rel = file.relative_to(self.root)
        source = ast.parse(file.read_text(), str(rel))
        local = local_modules(self.root, file)
        found = []
        for line, module in absolute_imports(source):
            if module in sys.stdlib_module_names or module in local:
                continue
            dists = self.provides.get(module, [])
            if not dists:
                found.append(
                    f"{rel}:{line}: imports `{module}`, which is neither the standard library, "
                    f"nor this repository's, nor installed: declare the package that provides "
                    f"it in {self.where}, then run `make lock`"
                )
            elif not {canonicalize_name(d) for d in dists} & self.allowed:
                found.append(
                    f"{rel}:{line}: imports `{module}` (from the package "
                    f"{' or '.join(sorted(set(dists)))}), which pyproject.toml does not declare "
                    f"in {self.where}: add it there, with bounds and a comment saying why, "
                    f"then run `make lock`"
                )
        return found


def test_the_product_imports_only_declared_dependencies() -> None:
    check = ImportCheck(REPO, names(requirements("default")), DEFAULT_WHERE)
    if problems := check.problems(PRODUCT):
        pytest.fail("undeclared imports:\n" + "\n".join(problems), pytrace=False)


def test_bench_and_tests_import_only_declared_dependencies() -> None:
    allowed = names(requirements("default")) | names(requirements("dev"))
    if problems := ImportCheck(REPO, allowed, DEV_WHERE).problems(DEV_TREES):
        pytest.fail("undeclared imports:\n" + "\n".join(problems), pytrace=False)


def test_an_undeclared_import_is_named_with_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "__init__.py").write_text("")
    (tmp_path / "pipeline" / "sibling.py").write_text("")
    (tmp_path / "pipeline" / "yaml.py").write_text("")  # beside it, yet not what `import yaml` is
    (tmp_path / "pipeline" / "mod.py").write_text(
        "from __future__ import annotations\n"
        "import os.path\n"
        "from . import sibling\n"
        "from pipeline import sibling as again\n"
        "import yaml\n"
        "try:\n"
        "    import tomli_w\n"
        "except ImportError:\n"
        "    tomli_w = None\n"
        "from PIL import Image\n"
        "import surely_no_such_module_here\n"
    )
    declared = {"pillow"}  # PyYAML forgotten, as idna was
    check = ImportCheck(tmp_path, declared, DEFAULT_WHERE)
    problems = check.problems(["pipeline"])
    assert len(problems) == 2, problems
    assert problems[0].startswith("pipeline/mod.py:5: imports `yaml` (from the package PyYAML)")
    assert "does not declare in [project] dependencies" in problems[0]
    assert "`make lock`" in problems[0]
    assert problems[1].startswith("pipeline/mod.py:11: imports `surely_no_such_module_here`")
    assert "nor installed" in problems[1]


def test_a_dev_only_package_in_the_product_is_caught(tmp_path: Path) -> None:
    """pytest is declared (in the dev extra), but a server installs without it."""
    (tmp_path / "subscribers").mkdir()
    (tmp_path / "subscribers" / "leak.py").write_text("import flask\n\nimport pytest\n")
    check = ImportCheck(tmp_path, names(requirements("default")), DEFAULT_WHERE)
    assert check.problems(["subscribers"]) == [
        "subscribers/leak.py:3: imports `pytest` (from the package pytest), which "
        "pyproject.toml does not declare in [project] dependencies: add it there, with "
        "bounds and a comment saying why, then run `make lock`"
    ]
    dev = ImportCheck(tmp_path, names(requirements("default")) | {"pytest"}, DEV_WHERE)
    assert dev.problems(["subscribers"]) == []


def test_modules_beside_a_test_are_its_own_not_dependencies(tmp_path: Path) -> None:
    """tests/ is no package: pytest puts it on sys.path, so `helpers` is the file beside."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "helpers.py").write_text("")
    (tmp_path / "tests" / "test_x.py").write_text("from helpers import make\nimport markdown_it\n")
    problems = ImportCheck(tmp_path, {"pytest"}, DEV_WHERE).problems(["tests"])
    assert len(problems) == 1 and problems[0].startswith("tests/test_x.py:2: imports `markdown_it`")


# Released at 1.0 or later, yet each new minor changes what the product outputs (HTML,
# SQL behaviour) or how it is checked (lint rules, the browser driver).
FAST_MOVING = {"mjml-python", "sqlalchemy", "ruff", "playwright"}


def test_every_dependency_has_a_floor_and_the_fast_moving_ones_a_ceiling() -> None:
    for req in requirements("default") + requirements("dev"):
        floors = [s.version for s in req.specifier if s.operator == ">="]
        assert floors, f"pyproject.toml: {req} needs a floor (the version the lock pins)"
        if floors[0].startswith("0.") or canonicalize_name(req.name) in FAST_MOVING:
            assert any(s.operator == "<" for s in req.specifier), (
                f"pyproject.toml: {req} is pre-1.0 or fast-moving: give it a ceiling below "
                f"the next minor"
            )


# ---- the locks ----------------------------------------------------------------------------


@dataclass
class Pin:
    name: str
    version: str
    marker: str
    hashes: set[str] = field(default_factory=set)
    via: list[str] = field(default_factory=list)  # who needs it (`# via` lines)


PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)(?:\s*;\s*(.+?))?\s*\\?$")


def locked(path: Path) -> dict[str, Pin]:
    """A `uv pip compile --generate-hashes` file: `name==version [; marker] \\`, then its
    `--hash=` lines and `# via` comments."""
    pins: dict[str, Pin] = {}
    pin: Pin | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if match := PIN.match(raw):
            name, pinned, marker = match.groups()
            pin = pins[canonicalize_name(name)] = Pin(canonicalize_name(name), pinned, marker or "")
        elif pin and line.startswith("--hash="):
            pin.hashes.add(line.removeprefix("--hash=").rstrip(" \\"))
        elif pin and line.startswith("#"):
            if who := line.lstrip("# ").removeprefix("via").strip():
                pin.via.append(who)
        elif line and not line.startswith("#"):
            raise AssertionError(f"{path.name}: not a pinned requirement: {raw!r}")
    return pins


@pytest.mark.parametrize("lock", [DEV_LOCK, DEFAULT_LOCK], ids=lambda p: p.name)
def test_the_lock_pins_every_package_with_hashes(lock: Path) -> None:
    text = lock.read_text()
    assert text.startswith("# This file was autogenerated by uv via the following command:\n#")
    assert "make lock" in text.splitlines()[1], "write the lock with `make lock`, nothing else"
    pins = locked(lock)
    assert len(pins) > 20
    for pin in pins.values():
        assert pin.hashes, f"{lock.name}: {pin.name}=={pin.version} has no --hash"
        assert all(h.startswith("sha256:") and len(h) == 71 for h in pin.hashes), pin


@pytest.mark.parametrize(
    ("lock", "groups"),
    [(DEV_LOCK, ("default", "dev", "build")), (DEFAULT_LOCK, ("default", "build"))],
    ids=["requirements-dev.lock", "requirements.lock"],
)
def test_the_lock_pins_every_declared_dependency_within_its_bounds(
    lock: Path, groups: tuple[str, ...]
) -> None:
    pins = locked(lock)
    for group in groups:
        for req in requirements(group):
            pin = pins.get(canonicalize_name(req.name))
            assert pin, f"{lock.name} has no {req.name} ({group}): run `make lock`"
            assert req.specifier.contains(pin.version, prereleases=True), (
                f"{lock.name} pins {req.name}=={pin.version}, outside pyproject's "
                f"{req.specifier}: run `make lock`"
            )
            for extra in req.extras:  # psycopg[binary] -> psycopg-binary
                assert canonicalize_name(f"{req.name}-{extra}") in pins, (req, lock.name)


def test_the_default_lock_is_the_dev_lock_without_the_dev_tools() -> None:
    dev, default = locked(DEV_LOCK), locked(DEFAULT_LOCK)
    for name, pin in default.items():
        assert name in dev, f"requirements.lock pins {name}, requirements-dev.lock does not"
        theirs = dev[name]
        assert (pin.version, pin.marker, pin.hashes) == (
            theirs.version,
            theirs.marker,
            theirs.hashes,
        ), f"{name} differs between the two locks: run `make lock`"
    dev_only = names(requirements("dev")) - names(requirements("default"))
    for name in dev_only & default.keys():
        needed_by = [v for v in default[name].via if not v.startswith("-c ")]
        assert needed_by, f"requirements.lock holds the dev tool {name}, which nothing needs"
    for tool in ("pytest", "ruff", "playwright", "responses"):
        assert tool not in default


def test_this_environment_holds_exactly_the_locked_versions() -> None:
    """What the suite runs against is what the lock pins (`make install` installs it)."""
    wrong = []
    for pin in locked(DEV_LOCK).values():
        if pin.marker and not Marker(pin.marker).evaluate():
            continue
        try:
            have = version(pin.name)
        except PackageNotFoundError:
            have = "not installed"
        if have != pin.version:
            wrong.append(f"{pin.name}: locked {pin.version}, installed {have}")
    assert not wrong, "run `make install`:\n" + "\n".join(wrong)


# ---- make install follows the lock --------------------------------------------------------


LOCK_FILES = ("requirements-dev.lock", "requirements.lock")


@pytest.fixture
def make_dir(tmp_path: Path) -> Path:
    """The Makefile and its inputs, with a .venv that was installed after they were written."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    for name in ("Makefile", "pyproject.toml", *LOCK_FILES):
        shutil.copy2(REPO / name, tmp_path / name)
        set_mtime(tmp_path / name, time.time() - 100)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").touch()
    (tmp_path / ".venv" / ".installed").touch()
    return tmp_path


def set_mtime(path: Path, when: float) -> None:
    os.utime(path, (when, when))


def dry_run(where: Path, *args: str) -> str:
    """What `make -n ARGS` would run, one command a line."""
    plan = subprocess.run(
        ["make", "-n", *args], cwd=where, capture_output=True, text=True, check=True
    ).stdout
    return plan.replace("\\\n", " ")


def test_make_install_reinstalls_from_the_lock_when_it_or_pyproject_changes(
    make_dir: Path,
) -> None:
    assert "pip" not in dry_run(make_dir, "install"), "up to date: nothing to install"
    for changed in ("requirements-dev.lock", "pyproject.toml"):
        set_mtime(make_dir / changed, time.time() + 10)
        plan = dry_run(make_dir, "install")
        assert "install -q --require-hashes -r requirements-dev.lock" in plan, changed
        assert "install -q --no-deps --no-build-isolation -e ." in plan, changed
        assert "check" in plan and "run make lock" in plan, changed
        set_mtime(make_dir / changed, time.time() - 100)
    assert "pip" not in dry_run(make_dir, "install", "LOCK=requirements.lock")
    set_mtime(make_dir / "requirements.lock", time.time() + 10)
    plan = dry_run(make_dir, "install", "LOCK=requirements.lock")
    assert "--require-hashes -r requirements.lock" in plan


def test_make_lock_writes_both_locks_from_pyproject_with_hashes(make_dir: Path) -> None:
    plan = dry_run(make_dir, "lock")
    compiles = [line for line in plan.splitlines() if " pip compile " in line]
    assert len(compiles) == 2, plan
    for line in compiles:
        for option in ("--universal", "--python-version 3.11", "--generate-hashes"):
            assert option in line
        assert "--upgrade" not in line
    assert "--extra dev -o requirements-dev.lock" in compiles[0]
    assert "-c requirements-dev.lock -o requirements.lock" in compiles[1]
    upgrade = [line for line in dry_run(make_dir, "upgrade").splitlines() if "compile" in line]
    assert len(upgrade) == 2 and all("--upgrade" in line for line in upgrade)
