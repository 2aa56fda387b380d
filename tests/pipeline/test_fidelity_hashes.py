"""A change that alters a run's numbers renames its run folder; the others keep theirs
(docs/fidelity.md, "Where a default differs from what we had")."""

from pipeline.suite import make_plan

# First seed's run folders of the suite's smoke profile on generated HalfCheetah-ME, as keyed
# before issue 25 (Diffusion-QL annealed its lr; CQL saw raw states).
BEFORE = {
    "diffusion_ql": "seed0-5d99f8a6",
    "diffusion_ql_flow": "seed0-95020d69",
    "cql": "seed0-ebc172dc",
    "bc": "seed0-78d26a6c",
    "fql": "seed0-2606b2d5",
    "cvae_ql": "seed0-47b3e07c",
}


def test_issue_25_renames_diffusion_ql_and_cql_runs_only(tmp_path):
    algos = [*BEFORE, "diffusion_ql_annealed", "diffusion_ql_flow_annealed"]
    plan = make_plan(
        "smoke", out=tmp_path, algos=algos, datasets=["halfcheetah-medium-expert"], seeds=1
    )
    names = {job.algo: job.run_dir.name for job in plan.jobs}
    for algo in ("diffusion_ql", "diffusion_ql_flow", "cql"):  # new numbers: new folders
        assert names[algo] != BEFORE[algo], algo
    for algo in ("bc", "fql", "cvae_ql"):  # unchanged methods keep their folders
        assert names[algo] == BEFORE[algo], algo
    # the annealed variants train exactly what Diffusion-QL trained before (own algo folder)
    assert names["diffusion_ql_annealed"] == BEFORE["diffusion_ql"]
    assert names["diffusion_ql_flow_annealed"] == BEFORE["diffusion_ql_flow"]
