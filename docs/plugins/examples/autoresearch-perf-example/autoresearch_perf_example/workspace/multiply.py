"""Polynomial multiplication, the function the ratchet makes faster.

A polynomial is the list of its coefficients, lowest power first: [1, 2] is 1 + 2x.
multiply([1, 2], [3, 4]) == [3, 10, 8], since (1 + 2x)(3 + 4x) = 3 + 10x + 8x².
"""

KARATSUBA_CUTOFF = 1  # operands this short (or shorter) use the schoolbook method; at least 1


def multiply(p: list[int], q: list[int]) -> list[int]:
    """The coefficients of p·q (p and q non-empty)."""
    if min(len(p), len(q)) <= KARATSUBA_CUTOFF:
        return schoolbook(p, q)
    return karatsuba(p, q)


def schoolbook(p: list[int], q: list[int]) -> list[int]:
    """Every coefficient of p times every coefficient of q: len(p)·len(q) multiplications."""
    product = [0] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            product[i + j] += a * b
    return product


def karatsuba(p: list[int], q: list[int]) -> list[int]:
    """Three half-size products instead of four.

    With p = p0 + p1·xᵐ and q = q0 + q1·xᵐ: p·q = low + (middle - low - high)·xᵐ + high·x²ᵐ,
    where low = p0·q0, high = p1·q1 and middle = (p0 + p1)·(q0 + q1).
    """
    m = min(len(p), len(q)) // 2
    low = multiply(p[:m], q[:m])
    high = multiply(p[m:], q[m:])
    middle = multiply(add(p[:m], p[m:]), add(q[:m], q[m:]))
    product = [0] * (len(p) + len(q) - 1)
    for i, c in enumerate(low):
        product[i] += c
        product[i + m] -= c
    for i, c in enumerate(high):
        product[i + 2 * m] += c
        product[i + m] -= c
    for i, c in enumerate(middle):
        product[i + m] += c
    return product


def add(p: list[int], q: list[int]) -> list[int]:
    """The coefficients of p + q."""
    if len(p) < len(q):
        p, q = q, p
    total = list(p)
    for i, c in enumerate(q):
        total[i] += c
    return total
