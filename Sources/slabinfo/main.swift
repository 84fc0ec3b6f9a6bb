import Slab
print(SlabInfo.header)
