import AllocBench
