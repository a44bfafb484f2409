"""numba kernels over raw arrays (CSR ``indptr/indices/data``, dense factors).

Each kernel module holds the compiled kernels and, beside each, a slow NumPy reference twin
named ``<kernel>_reference`` that states what the kernel computes; tests compare the two.
Kernels import nothing from the rest of recforge except :mod:`recforge._numba`.
"""
