"""Bounded fuzzing in ``make test``: every input kind of ``fuzz_harness.targets()`` gets a few
malformed variants (derandomized, so the suite is repeatable); each run must keep the contract of
docs/reliability.md. ``benchmarks/fuzz.py --minutes N`` runs the same targets for longer."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz_harness
from fuzz_harness import Workspace, targets

# examples per target by cost: the whole file stays around a minute on 2 busy cores
BUDGET = {"cheap": 25, "serve": 25, "linker": 15, "model": 5, "fit": 4, "train": 2}
TARGETS = targets()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    return Workspace.build(tmp_path_factory.mktemp("fuzz"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_malformed_input_keeps_the_contract(workspace: Workspace, name: str) -> None:
    target = TARGETS[name]
    strategy = target.strategy(workspace).map(fuzz_harness.Blob)

    @settings(max_examples=BUDGET[target.cost], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(data=strategy)
    def run(data: fuzz_harness.Blob) -> None:
        target.check(workspace, data.data)

    run()
    assert sum(target.tally.values()) >= 1


def test_contract_checker_catches_violations(tmp_path) -> None:
    """The checker itself: an escaping exception, two error lines, a silent change of an older
    output and an unnamed file are all reported."""
    fuzzed = tmp_path / "in.json"
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("{}")
    before = fuzz_harness.snapshot(out)

    def outcome(status, err="", error=None):
        return fuzz_harness.Outcome("prog", status, err, error)

    good = outcome(1, f"prog: error: {fuzzed}: bad\n")
    assert fuzz_harness.check_contract(good, fuzzed, out, before) == "error"
    bad = [outcome(None, error=KeyError("x")), outcome(1, f"prog: error: {fuzzed}\nprog: error: again\n"),
           outcome(1, "prog: error: something is wrong\n"), outcome(2, f"prog: error: {fuzzed}\n")]
    for case in bad:
        with pytest.raises(fuzz_harness.ContractViolation):
            fuzz_harness.check_contract(case, fuzzed, out, before)
    (out / "report.json").write_text('{"changed": 1}')
    with pytest.raises(fuzz_harness.ContractViolation, match="changed existing outputs"):
        fuzz_harness.check_contract(good, fuzzed, out, before)
    (out / "report.json").write_text("{")
    with pytest.raises(fuzz_harness.ContractViolation, match="not a complete JSON"):
        fuzz_harness.check_contract(outcome(0), fuzzed, out, {}, results=("report.json",))


@given(seed=st.sampled_from([b'{"a": [1, 2, {"b": "c"}]}', b'[1, "x", null]']), data=st.data())
@settings(max_examples=50, deadline=None, database=None)
def test_json_variants_differ_from_the_seed_or_stay_bytes(seed: bytes, data) -> None:
    variant = data.draw(fuzz_harness.json_variants(seed))
    assert isinstance(variant, bytes)
