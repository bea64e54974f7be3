"""Engine-free kernels behind the tensor UDFs: numpy over whole Arrow batches.

One module per family: :mod:`.tensors` (Arrow tensor layouts <-> numpy),
:mod:`.slicing`, :mod:`.reductions`, :mod:`.similarity`, :mod:`.boxes`,
:mod:`.images`; :mod:`.errors` holds the one error they raise.
"""
