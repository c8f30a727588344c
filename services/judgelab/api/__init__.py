"""The gRPC API of judgelab; one subpackage per proto package version (``v1``)."""
