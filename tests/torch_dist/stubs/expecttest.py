"""The smallest stand-in for the `expecttest` package, which torch's test utilities import and
Debian does not ship (no python3-expecttest). torch.testing._internal.common_utils reads ACCEPT
and derives its TestCase from TestCase; the distributed suite never asserts inline expectations,
so nothing else is provided. On PYTHONPATH for the torch-dist runner only."""

import unittest

ACCEPT = False


class TestCase(unittest.TestCase):
    pass
