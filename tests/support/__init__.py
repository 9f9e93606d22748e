"""Helpers the tests share (servers, clients, backends, fixtures); imported as ``tests.support.X``."""
