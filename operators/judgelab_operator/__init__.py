"""The kopf operator that runs each `Experiment` custom resource through its phases.

It may import only `judgelab.spec` and the generated CRD (enforced by import-linter).
"""
