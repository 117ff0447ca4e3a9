"""Correctness tests (protected): runtime is only measured when all of these pass.

Run them with: python -m unittest test_multiply
"""

import ast
import random
import sys
import unittest
from pathlib import Path

from benchmark import operands
from multiply import multiply


def reference(p: list[int], q: list[int]) -> list[int]:
    """The definition of the product, kept out of the editable file."""
    product = [0] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            product[i + j] += a * b
    return product


class MultiplyTest(unittest.TestCase):
    def test_small_products(self):
        self.assertEqual(multiply([1, 2], [3, 4]), [3, 10, 8])
        self.assertEqual(multiply([5], [7]), [35])
        self.assertEqual(multiply([0], [1, 2, 3]), [0, 0, 0])
        self.assertEqual(multiply([1, 1], [1, -1]), [1, 0, -1])

    def test_random_products_of_every_shape(self):
        rng = random.Random(1)
        for _ in range(30):
            p = [rng.randint(-(10**6), 10**6) for _ in range(rng.randint(1, 120))]
            q = [rng.randint(-(10**6), 10**6) for _ in range(rng.randint(1, 120))]
            self.assertEqual(multiply(p, q), reference(p, q), f"sizes {len(p)} and {len(q)}")

    def test_benchmark_input(self):
        p, q = operands()
        self.assertEqual(multiply(p, q), reference(p, q))

    def test_inputs_are_left_unchanged(self):
        p, q = [3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8]
        multiply(p, q)
        self.assertEqual((p, q), ([3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8]))

    def test_standard_library_only(self):
        """The benchmark is about Python code: multiply.py may import the standard library only."""
        tree = ast.parse(Path(__file__).with_name("multiply.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                self.assertIn(name.split(".")[0], sys.stdlib_module_names, f"multiply.py imports {name}")


if __name__ == "__main__":
    unittest.main()
