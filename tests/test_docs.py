"""The docs cannot rot: every relative link in the README and docs/ (and data/'s READMEs) points to a file
that exists (and to a heading there, for an anchor), and every `python launch/...` command line in them
parses: a Hydra one (train.py, make_dataset.py) composes the config with its overrides, an argparse one
(plot.py, benchmark.py) parses with the script's own parser."""

import argparse
import functools
import re
import shlex
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from launch import benchmark, plot
from tests.helpers import CONFIGS

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md"), *(REPO / "data").rglob("*.md")])
HYDRA_SCRIPTS = ("launch/train.py", "launch/make_dataset.py")
FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def without_code(text: str) -> str:
    """The text outside fenced code blocks and inline code spans."""
    return re.sub(r"`[^`]*`", "", FENCED.sub("", text))


def slugs(text: str) -> set[str]:
    """GitHub's anchors of the headings: lower case, punctuation but - and _ dropped, spaces to -; a repeated
    heading gets -1, -2, ..."""
    found, seen = set(), {}
    for heading in re.findall(r"^#{1,6} +(.+?) *$", FENCED.sub("", text), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return found


def link_problems(text: str, page: Path) -> list[str]:
    """What is wrong with each relative link in a page's text: a missing file, an anchor with no heading."""
    problems = []
    for target in LINK.findall(without_code(text)):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        if not path:
            if anchor not in slugs(text):
                problems.append(f"{page.name}: link to {target}: no heading #{anchor} in {page.name}")
            continue
        file = (page.parent / path).resolve()
        if not file.exists():
            problems.append(f"{page.name}: link to {target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in slugs(file.read_text()):
            problems.append(f"{page.name}: link to {target}: no heading #{anchor} in {file.name}")
    return problems


def commands(text: str) -> list[str]:
    """Every `python launch/...` command line: in fenced blocks (with `\\` continuations, after `&&`), in
    indented code lines, and in inline code spans."""
    found = []
    for block in FENCED.findall(text):
        found += block.replace("\\\n", " ").splitlines()
    rest = FENCED.sub("", text)
    found += re.findall(r"^    (python launch/.*)$", rest, flags=re.M)
    found += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", rest)]
    lines = [" ".join(part.split()) for line in found for part in line.split("&&")]
    return [line for line in lines if line.startswith("python launch/")]


class Parsed(Exception):
    """Raised in place of running a script once its parser has parsed the command line."""


@functools.cache
def composition_problem(overrides: tuple[str, ...]) -> str | None:
    try:
        with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
            compose("config", overrides=list(overrides))
    except Exception as error:  # noqa: BLE001 - any failure to compose is the finding
        return f"{type(error).__name__}: {error}".splitlines()[0]
    return None


def hydra_problem(args: list[str]) -> str | None:
    """Composes the config with the overrides; for a multirun (-m), once for each value of each swept key
    (the other swept keys at their first value)."""
    multirun = bool({"-m", "--multirun"} & set(args))
    overrides = [arg for arg in args if arg not in ("-m", "--multirun")]
    flags = [arg for arg in overrides if arg.startswith("-")]
    if flags:
        return f"unexpected flag(s) {flags}"
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as error:  # noqa: BLE001
        return f"{type(error).__name__}: {error}".splitlines()[0]
    sweeps = {
        index: list(override.sweep_string_iterator())
        for index, override in enumerate(parsed)
        if override.is_sweep_override()
    }
    if sweeps and not multirun:
        return f"swept values without -m: {[overrides[index] for index in sweeps]}"
    first = [
        f"{parsed[i].get_key_element()}={sweeps[i][0]}" if i in sweeps else overrides[i]
        for i in range(len(overrides))
    ]
    variants = {tuple(first)}
    for index, values in sweeps.items():
        for value in values:
            variants.add(
                tuple(first[:index] + [f"{parsed[index].get_key_element()}={value}"] + first[index + 1 :])
            )
    return next(filter(None, map(composition_problem, sorted(variants))), None)


def argparse_problem(main, argv: list[str], monkeypatch) -> tuple[str | None, argparse.Namespace | None]:
    """Parses argv with the parser `main` builds (stopping before it runs); the problem, or the arguments."""
    parse = argparse.ArgumentParser.parse_args

    def parse_only(self, args=None, namespace=None):
        raise Parsed(parse(self, args, namespace))

    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", parse_only)
        patch.setattr(sys, "argv", ["script", *argv])
        try:
            main(argv) if main is plot.main else main()
        except Parsed as parsed:
            return None, parsed.args[0]
        except SystemExit as error:
            return f"argparse refused it (exit {error.code})", None
    return "the script ran without parsing a command line", None


def command_problem(command: str, monkeypatch) -> str | None:
    """What is wrong with one `python launch/...` command line, None if it parses."""
    try:
        _, script, *args = shlex.split(command, comments=True)
    except ValueError as error:
        return f"shell syntax: {error}"
    if script in HYDRA_SCRIPTS:
        return hydra_problem(args)
    if script == "launch/plot.py":
        return argparse_problem(plot.main, args, monkeypatch)[0]
    if script == "launch/benchmark.py":
        problem, parsed = argparse_problem(benchmark.main, args, monkeypatch)
        if problem:
            return problem
        agents = parsed.agents.split(",")
        return next(
            filter(None, (hydra_problem([f"agent={name}", *parsed.overrides]) for name in agents)), None
        )
    return f"no such entry point {script}" if not (REPO / script).exists() else f"unchecked script {script}"


def relative(page: Path) -> str:
    return str(page.relative_to(REPO))


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_every_relative_link_points_to_a_file_and_heading(page):
    assert link_problems(page.read_text(), page) == []


# The walk-through's commands name the agent it adds: tests/test_adding_an_agent.py parses them with it added.
COMMAND_PAGES = [page for page in PAGES if page.name != "adding_an_agent.md"]


@pytest.mark.parametrize("page", COMMAND_PAGES, ids=relative)
def test_every_launch_command_parses(page, monkeypatch):
    problems = {command: command_problem(command, monkeypatch) for command in commands(page.read_text())}
    assert {command: problem for command, problem in problems.items() if problem} == {}


def test_the_readme_is_a_front_page_with_the_ci_command():
    readme = (REPO / "README.md").read_text()
    assert len(readme) < 12_000
    assert 'pip install -e ".[dev]" && pytest\n' in readme  # .ci/run runs it verbatim
    assert 'pip install -e ".[dev]" && pytest' in (REPO / ".ci" / "run").read_text()


BROKEN = """# A page

See [the datasets](datasets.md), [a missing page](nowhere.md), [a heading](#a-page), [no heading](#nope),
and [no such section](README.md#no-such-section). `[not a link](missing.md)` is code.

```bash
python launch/train.py agent=qc_fql env=cube \\
  seed=1   # fine
python launch/train.py agent=not_an_agent
python launch/train.py agent=qc_fql env.no_such_key=1
python launch/train.py agent=qc_fql agent.chunk_length=1,5
python launch/train.py -m agent=qc_fql,not_an_agent seed=0,1
pip install -e . && python launch/plot.py sweeps/x --no-such-flag
```

    python launch/benchmark.py --agents qc_fql,no_agent

and `python launch/plot.py sweeps/a sweeps/b --by agent.name --aggregate`.
"""


def test_a_broken_link_and_bad_commands_are_found(tmp_path, monkeypatch):
    (tmp_path / "datasets.md").write_text("# Datasets\n")
    (tmp_path / "README.md").write_text("# Top\n")
    page = tmp_path / "page.md"
    problems = link_problems(BROKEN, page)
    assert len(problems) == 3, problems
    assert "link to nowhere.md: no file" in problems[0]
    assert "link to #nope: no heading #nope in page.md" in problems[1]
    assert "link to README.md#no-such-section: no heading" in problems[2]

    found = {command: command_problem(command, monkeypatch) for command in commands(BROKEN)}
    assert list(found) == [
        "python launch/train.py agent=qc_fql env=cube seed=1 # fine",
        "python launch/train.py agent=not_an_agent",
        "python launch/train.py agent=qc_fql env.no_such_key=1",
        "python launch/train.py agent=qc_fql agent.chunk_length=1,5",
        "python launch/train.py -m agent=qc_fql,not_an_agent seed=0,1",
        "python launch/plot.py sweeps/x --no-such-flag",
        "python launch/benchmark.py --agents qc_fql,no_agent",
        "python launch/plot.py sweeps/a sweeps/b --by agent.name --aggregate",
    ]
    problems = list(found.values())
    assert problems[0] is None and problems[-1] is None
    assert "not_an_agent" in problems[1] and "Could not override 'env.no_such_key'" in problems[2]
    assert problems[3].startswith("swept values without -m") and "not_an_agent" in problems[4]
    assert problems[5] == "argparse refused it (exit 2)" and "no_agent" in problems[6]


def test_github_anchors_of_headings():
    text = "# Aggregates over runs and tasks (`--aggregate`)\n## Robomimic (lift, can, square)\n"
    text += "## Usage\n## Usage\n"
    assert slugs(text) == {
        "aggregates-over-runs-and-tasks---aggregate",
        "robomimic-lift-can-square",
        "usage",
        "usage-1",
    }
