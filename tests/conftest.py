import torch

# Tests run on CPU with one thread: fast to start, repeatable, and polite on a
# shared 2-core machine.
torch.set_num_threads(1)
