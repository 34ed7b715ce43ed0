"""limi's test doubles, kept out of every production package.

- `scripted_policy`: an OpenAI-compatible chat server whose replies a script decides (and the
  offline demo's teacher is built on);
- `expert`: the scripted expert that solves the evaluator's workspace-basics tasks;
- `synthetic_prs` (with `synthetic_pr_changes`, `_features`, `_fixes`): invented pull requests
  for the curator's synthetic track;
- `synthetic_samples`: deterministic LIMI-format tool-use conversations for the trainer.

Installed by requirements-dev.txt; `limi-cli` depends on it for the demo's offline teacher.
Nothing here is real data or a real model.
"""
