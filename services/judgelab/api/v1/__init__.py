"""Generated code of the ``judgelab.v1`` proto package; source: proto/judgelab/v1/.

Only this file is written by hand. The ``*_pb2*`` modules and their ``.pyi`` stubs
come from ``python scripts/gen_protos.py``; import them directly, e.g.
``from judgelab.api.v1 import judge_pool_pb2, judge_pool_pb2_grpc``.
"""
