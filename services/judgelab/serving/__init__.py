"""Shared gRPC serving kit: error mapping, the one interceptor, health, reflection, shutdown.

Every service's `server.py` stays thin (validate → convert → call core → convert back) and
builds its server with `judgelab.serving.server.GrpcServer`.
"""
