"""The work each stage's unit does, run by the local runtime and by the operator's Jobs.

Units use the shared core (spec, engines, judging, queues, api, serving) and reach services
only over gRPC; they never import a service package.
"""
