"""Training on 2 MiB transparent huge pages, as the executables run (src/core/huge_pages.cpp).

On the project's virtual machine, faulting in 4 KiB pages for every batch's tensors cost
about as much as the arithmetic: 6 steps of the CT U-Net (batch 16) took 114 s with
ordinary pages and 60 s with glibc's `glibc.malloc.hugetlb=1` tunable, same losses.
glibc reads the tunable only when a process starts, so a training script run as a script
calls `restart_with_huge_pages()` first thing, before torch is imported: it starts the
script again (same interpreter, same arguments) with the tunable set, once. The results
do not change, only where the memory comes from. SPINE_HUGE_PAGES=0 leaves it alone."""
import os
import sys

TUNABLE = "glibc.malloc.hugetlb=1"


def restart_with_huge_pages():
    if os.environ.get("SPINE_HUGE_PAGES") == "0" or not os.path.isfile(sys.argv[0]):
        return  # switched off, or not a script that can be started again (python3 -c)
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in tunables:
        return
    env = dict(os.environ, GLIBC_TUNABLES=f"{tunables}:{TUNABLE}" if tunables else TUNABLE)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, env)
