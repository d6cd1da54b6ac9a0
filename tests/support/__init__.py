"""Helpers the tests share (not tests themselves): a synthetic MOD folder, an in-process demo server."""
