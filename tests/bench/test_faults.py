"""``python -m bench.faults``: ten ``plansearch index`` builds SIGKILLed at seeded random moments."""

from __future__ import annotations

from pathlib import Path

from bench.faults import moments, run_faults

CORPUS = Path(__file__).resolve().parents[2] / "corpus"


def test_moments_are_seeded_and_cover_the_run() -> None:
    a = moments(10, 7, write_starts=10.0, swapped=12.0)
    assert a == moments(10, 7, write_starts=10.0, swapped=12.0)
    assert a != moments(10, 8, write_starts=10.0, swapped=12.0)
    early = [m for m, relative in a if not relative]
    late = [m for m, relative in a if relative]
    assert len(early) == 7 and len(late) == 3
    # One moment in each seventh of the run up to the first write, one in each third of the write phase.
    assert [int(m // (10.0 / 7)) for m in early] == list(range(7))
    assert [int(m // (2.0 / 3)) for m in late] == [0, 1, 2]


def test_ten_killed_builds_never_damage_the_index(seed_index: Path, model_dir: Path, tmp_path: Path) -> None:
    result = run_faults(kills=10, seed=7, source_index=seed_index, corpus=CORPUS, model_dir=model_dir, workdir=tmp_path)
    print(result.summary())
    assert len(result.kills) == 10
    assert sum(k.killed for k in result.kills) >= 8, result.summary()
    for kill in result.kills:
        assert kill.loads, kill.line()
        assert kill.same_answers, kill.line()
        assert kill.earlier_left_cleaned is not False, kill.line()
    # The kills landed in different phases, some of them while the new version was being written.
    phases = {k.phase for k in result.kills}
    assert {"starting", "embedding"} <= phases, result.summary()
    assert phases & {"writing", "renamed", "linking", "swapped"}, result.summary()
    assert result.leftovers_seen >= 1, "some kill left something for the next build to clean"
    # The next full build cleans up and gives the new answers.
    assert result.final_exit == 0
    assert result.final_left == []
    assert len(result.final_versions) <= 2
    assert result.final_same_answers
    assert result.ok
