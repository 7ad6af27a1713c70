"""The generated C inference library: a trained, compressed model → dependency-free C99 (docs/cgen.md).

`generate_c_library` lowers the deployable model (`torch.fx`, by module type) to a layer list, chooses
number formats (integer kernels with int32 accumulators and fixed-point requantization wherever
activations are quantized), packs the weights exactly as the Flash rule counts them, plans one static
arena, and prints small C templates over that data.
"""

from .library import ENCODERS, CLayer, CLibrary, generate_c_library
from .numerics import Options
from .packing import pack_bits, unpack_bits

__all__ = ["ENCODERS", "CLayer", "CLibrary", "Options", "generate_c_library", "pack_bits", "unpack_bits"]
