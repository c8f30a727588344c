"""The kopf operator that runs each `Experiment` custom resource through its phases.

One Experiment is one Helm release of the experiment chart. The phase machine
(`judgelab.phases`, shared with the local runtime) decides what runs; this package only
observes Jobs and Deployments, syncs the release and writes status and Events. It may import
only `judgelab.spec`, `judgelab.phases` and the generated CRD (enforced by import-linter).
"""
