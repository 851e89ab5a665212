"""A ``plansearch index`` build SIGKILLed at random moments, and what it leaves behind.

    python -m bench.faults [--kills 10] [--seed 7] [--index DIR] [--corpus DIR]

Works on a copy of an index and its corpus in a temporary directory. One item
is added to a corpus file, so that each build has real work: parse, embed,
write a new version, swap ``current``. One uninterrupted build of that change,
in a scratch copy, measures how long a build takes and when it starts writing,
and gives the answers the new index must give.

Then ``--kills`` builds are started one after the other and each is sent
SIGKILL at a random moment (seeded, printed): seven in ten at a time drawn across the
run from its start to its first write, the others at a time drawn across the
write phase, counted from the moment the build's temporary directory appears.
After each kill:

* the index still loads with every check (``Index.load``, checksums included);
* if ``current`` did not move, a fixed set of queries gives exactly the results
  it gave before the build (same passages, citations and scores); if the build
  got as far as the swap, they are the results of the uninterrupted build, and
  the copy is put back to its old state for the next round;
* what a killed build leaves (``.tmp-*``, ``.current-*``, a ``v-*`` newer than
  ``current``) is gone once the next build has started its work.

A last, uninterrupted build must succeed, leave no leftovers and give the new
results. Exit status 0 when every check passed; ``run_faults`` returns the
same figures as a ``FaultsResult`` for the tests.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.load import NEW_ITEM, PROBE_QUERY, add_new_item, read_queries
from indexer.config import PROJECT_ROOT, Settings

PROBES = 12  # dev queries whose results are compared
Results = list[list[tuple[str, str, float]]]


def leftovers(index_dir: Path) -> set[str]:
    """What killed builds leave: temporary versions and links, versions newer than ``current``."""
    from indexer.index import current_version

    current = current_version(index_dir)
    newer = (lambda name: name.startswith("v-") and name > current.name) if current is not None else lambda _: False
    return {p.name for p in index_dir.iterdir() if p.name.startswith((".tmp-", ".current-")) or newer(p.name)}


def search_results(settings: Settings, queries: list[str]) -> Results:
    """Each query's top 8: citation, text and score. Loading checks every checksum."""
    from search.engine import Searcher

    searcher = Searcher.open(settings)
    try:
        return [
            [(hit.passage.citation, hit.passage.text, hit.score) for hit in searcher.search(q, k=8).hits]
            for q in queries
        ]
    finally:
        searcher.index.close()


def same_results(a: Results, b: Results, tolerance: float = 1e-3) -> bool:
    """The same passages in the same order, scores equal up to float noise (a rebuilt
    version's vectors may differ from another build's in their last bits)."""
    if [[h[:2] for h in run] for run in a] != [[h[:2] for h in run] for run in b]:
        return False
    return all(abs(x[2] - y[2]) < tolerance for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True))


@dataclass
class Kill:
    n: int
    moment: float  # seconds after the start, or after the write phase began (``relative_to_write``)
    relative_to_write: bool
    killed_at: float = 0.0  # seconds after the start
    killed: bool = False  # False: the build had finished before the moment
    phase: str = ""
    current_moved: bool = False
    loads: bool = False
    same_answers: bool = False
    left: list[str] = field(default_factory=list)
    earlier_left_cleaned: bool | None = None  # None: this build never reached its clean-up

    @property
    def ok(self) -> bool:
        return self.loads and self.same_answers and self.earlier_left_cleaned is not False

    def line(self) -> str:
        when = f"write+{self.moment:.2f} s" if self.relative_to_write else f"{self.moment:.2f} s"
        outcome = "killed" if self.killed else "finished first"
        status = "ok" if self.ok else "FAILED"
        cleaned = {None: "-", True: "yes", False: "NO"}[self.earlier_left_cleaned]
        return (
            f"  kill {self.n:2d} at {when:>13} (t={self.killed_at:5.2f} s) {outcome:>14}, phase {self.phase:<10} "
            f"current {'moved' if self.current_moved else 'kept '}, loads {'yes' if self.loads else 'NO'}, "
            f"answers {'same' if self.same_answers else 'DIFFERENT'}, left {len(self.left)}, "
            f"earlier leftovers cleaned {cleaned}: {status}"
        )


@dataclass
class FaultsResult:
    seed: int
    build_seconds: float = 0.0  # the uninterrupted build
    write_starts: float = 0.0  # when it created its temporary directory
    swapped: float = 0.0  # when it moved `current`
    kills: list[Kill] = field(default_factory=list)
    final_exit: int | None = None
    final_left: list[str] = field(default_factory=list)
    final_versions: list[str] = field(default_factory=list)
    final_same_answers: bool = False
    leftovers_seen: int = 0

    @property
    def ok(self) -> bool:
        return (
            bool(self.kills)
            and all(k.ok for k in self.kills)
            and self.final_exit == 0
            and not self.final_left
            and self.final_same_answers
            and len(self.final_versions) <= 2
        )

    def summary(self) -> str:
        lines = [
            f"faults: {len(self.kills)} builds SIGKILLed (seed {self.seed}); an uninterrupted build takes "
            f"{self.build_seconds:.1f} s, starts writing at {self.write_starts:.2f} s, swaps at {self.swapped:.2f} s",
            *(k.line() for k in self.kills),
            f"  leftovers seen after kills: {self.leftovers_seen}; final build exit {self.final_exit}, "
            f"leftovers after it {self.final_left or 'none'}, versions kept {len(self.final_versions)}, "
            f"answers {'as the uninterrupted build' if self.final_same_answers else 'DIFFERENT'}",
            "  OK" if self.ok else "  FAILED",
        ]
        return "\n".join(lines)


def build_command(corpus: Path, index_dir: Path) -> list[str]:
    return [sys.executable, "-m", "api.cli", "index", str(corpus), "--index", str(index_dir)]


def timed_build(corpus: Path, index_dir: Path, env: dict[str, str]) -> tuple[float, float, float]:
    """Run one build to the end; return its duration, when its temporary directory appeared
    and when ``current`` moved (seconds after its start)."""
    from indexer.index import current_version

    before = {p.name for p in index_dir.iterdir()}
    old = current_version(index_dir)
    started = time.monotonic()
    proc = subprocess.Popen(
        build_command(corpus, index_dir), cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    write_starts = swapped = 0.0
    while proc.poll() is None:
        if not write_starts and any(p.name.startswith(".tmp-") and p.name not in before for p in index_dir.iterdir()):
            write_starts = time.monotonic() - started
        if write_starts and not swapped and current_version(index_dir) != old:
            swapped = time.monotonic() - started
        time.sleep(0.001)
    output = proc.stdout.read().decode("utf-8", errors="replace") if proc.stdout else ""
    if proc.returncode != 0:
        raise RuntimeError(f"the uninterrupted build failed ({proc.returncode}):\n{output}")
    took = time.monotonic() - started
    return took, write_starts or took, swapped or took


def moments(kills: int, seed: int, write_starts: float, swapped: float) -> list[tuple[float, bool]]:
    """Seeded kill moments: stratified over [0, write start), and for 30 % of them over the
    write phase, up to the swap of ``current`` (counted from when the temporary directory appears)."""
    rng = random.Random(seed)
    in_write = max(1, round(kills * 0.3)) if kills > 1 else 0
    early = kills - in_write
    out = [(write_starts * (i + rng.random()) / early, False) for i in range(early)]
    write_phase = max(swapped - write_starts, 0.05)
    out += [(write_phase * (i + rng.random()) / in_write, True) for i in range(in_write)]
    return out


def kill_build(
    kill: Kill, corpus: Path, index_dir: Path, env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """Start a build and SIGKILL it at the kill's moment."""
    before = {p.name for p in index_dir.iterdir()}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(build_command(corpus, index_dir), cwd=PROJECT_ROOT, env=env, stdout=log, stderr=log)
    started = time.monotonic()
    deadline = started + kill.moment
    if kill.relative_to_write:
        deadline = float("inf")
        while proc.poll() is None and time.monotonic() - started < 300:
            if any(p.name.startswith(".tmp-") and p.name not in before for p in index_dir.iterdir()):
                deadline = time.monotonic() + kill.moment
                break
            time.sleep(0.001)
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    kill.killed_at = time.monotonic() - started
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        kill.killed = True
    proc.wait(timeout=60)
    if kill.killed and proc.returncode != -signal.SIGKILL:
        kill.killed = False  # it ended on its own between the check and the signal
    return proc


def phase_of(log_text: str, index_dir: Path, before: set[str], current_moved: bool) -> str:
    new = {p.name for p in index_dir.iterdir()} - before
    if current_moved:
        return "swapped"
    if any(n.startswith(".current-") for n in new):
        return "linking"
    if any(n.startswith("v-") for n in new):
        return "renamed"
    if any(n.startswith(".tmp-") for n in new):
        return "writing"
    if "embedding" in log_text:
        return "embedding"
    return "starting"


def run_faults(
    kills: int = 10,
    seed: int = 7,
    source_index: Path | None = None,
    corpus: Path | None = None,
    model_dir: Path | None = None,
    workdir: Path | None = None,
    say=print,  # type: ignore[no-untyped-def]
) -> FaultsResult:
    from bench.load import prepare, server_env
    from indexer.index import current_version

    defaults = Settings.from_env()
    source_index = source_index or defaults.resolved_index_dir
    corpus = corpus or defaults.corpus_dir
    model_dir = model_dir or defaults.resolved_model_dir
    queries = [*read_queries()[:PROBES], PROBE_QUERY]
    result = FaultsResult(seed)
    with tempfile.TemporaryDirectory(prefix="plansearch-faults-") as tmp:
        root = workdir or Path(tmp)
        env = server_env(root / "home", root / "corpus", model_dir)
        work_corpus, index_dir = prepare(root, source_index, corpus, env)
        settings = Settings.from_env(
            environ={}, home=root / "home", corpus_dir=work_corpus, index_dir=index_dir, model_dir=model_dir
        )
        original = current_version(index_dir)
        assert original is not None
        before_answers = search_results(settings, queries)
        add_new_item(work_corpus)

        # The uninterrupted build of the same change, in a scratch copy; one
        # untimed build first, so that the timed one finds the caches a build
        # leaves (jieba's word table, 0.5 s) as every killed build will.
        warm = root / "warm-index"
        shutil.copytree(index_dir, warm, symlinks=True)
        timed_build(work_corpus, warm, env)
        shutil.rmtree(warm)
        scratch = root / "scratch-index"
        shutil.copytree(index_dir, scratch, symlinks=True)
        pristine = root / "pristine-index"
        shutil.copytree(index_dir, pristine, symlinks=True)
        result.build_seconds, result.write_starts, result.swapped = timed_build(work_corpus, scratch, env)
        after_answers = search_results(
            Settings.from_env(environ={}, home=root / "home", index_dir=scratch, model_dir=model_dir), queries
        )
        assert any(NEW_ITEM[:6] in hit[1] for hit in after_answers[-1]), "the new item is found after the build"
        say(
            f"bench.faults: a build takes {result.build_seconds:.1f} s and starts writing at "
            f"{result.write_starts:.1f} s; killing {kills} builds (seed {seed})"
        )

        earlier: set[str] = set()
        for n, (moment, relative) in enumerate(moments(kills, seed, result.write_starts, result.swapped), 1):
            kill = Kill(n, moment, relative)
            names_before = {p.name for p in index_dir.iterdir()}
            log_path = root / f"build-{n}.log"
            kill_build(kill, work_corpus, index_dir, env, log_path)
            log_text = log_path.read_text(encoding="utf-8", errors="replace")
            current = current_version(index_dir)
            kill.current_moved = current != original
            kill.phase = phase_of(log_text, index_dir, names_before, kill.current_moved)
            kill.left = sorted(leftovers(index_dir))
            result.leftovers_seen += len(set(kill.left) - earlier)
            # The build removes earlier leftovers before it embeds anything.
            if "embedding" in log_text or kill.current_moved:
                kill.earlier_left_cleaned = not (earlier & set(kill.left))
            try:
                answers = search_results(settings, queries)  # loads with every check, checksums included
                kill.loads = True
                kill.same_answers = (
                    same_results(answers, after_answers) if kill.current_moved else answers == before_answers
                )
            except Exception as exc:  # a failure to load is the finding
                kill.phase += f" ({type(exc).__name__}: {exc})"
            say(kill.line())
            result.kills.append(kill)
            earlier = set(kill.left)
            if kill.current_moved:
                # The change is in: put the old index back so the next build has work again.
                shutil.rmtree(index_dir)
                shutil.copytree(pristine, index_dir, symlinks=True)
                earlier = set()

        final = subprocess.run(
            build_command(work_corpus, index_dir), cwd=PROJECT_ROOT, env=env, capture_output=True, timeout=600
        )
        result.final_exit = final.returncode
        result.final_left = sorted(leftovers(index_dir))
        result.final_versions = sorted(p.name for p in index_dir.glob("v-*"))
        if final.returncode == 0:
            result.final_same_answers = same_results(search_results(settings, queries), after_answers)
        else:
            say(final.stdout.decode("utf-8", errors="replace")[-2000:])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--index", type=Path, help="index to copy (default: the configured one)")
    parser.add_argument("--corpus", type=Path, help="its corpus (default: the configured one)")
    args = parser.parse_args(argv)
    result = run_faults(kills=args.kills, seed=args.seed, source_index=args.index, corpus=args.corpus)
    print(result.summary())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
