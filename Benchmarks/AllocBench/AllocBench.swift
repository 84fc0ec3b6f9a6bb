import Slab
