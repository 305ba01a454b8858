#!/usr/bin/python3
"""Peak memory of one spine command on a large generated volume (issue 13).

Writes an uncompressed int16 NIfTI of NX x NY x NZ voxels (random values, 0.8 x 0.8 x 1 mm)
into a temporary folder, runs the command on it once and prints the peak resident memory
of the child process, its wall time, bytes per voxel, and what --max-memory checks for
reading it (the float image, 4 bytes per voxel, and a 1 MiB chunk: NIfTI voxels are
decoded straight into it).

usage: scripts/bench_memory.py [NX NY NZ] [--tool spine-prep] [--bin build/bin] [extra args]
"""
import argparse, os, resource, struct, subprocess, sys, tempfile, time

import numpy as np


def write_nifti(path, nx, ny, nz):
    h = bytearray(352)
    struct.pack_into('<i', h, 0, 348)
    struct.pack_into('<8h', h, 40, 3, nx, ny, nz, 1, 1, 1, 1)
    struct.pack_into('<hh', h, 70, 4, 16)            # datatype int16, 16 bits
    struct.pack_into('<8f', h, 76, 1, 0.8, 0.8, 1.0, 1, 1, 1, 1)
    struct.pack_into('<ff', h, 108, 352.0, 1.0)      # vox_offset, scl_slope
    struct.pack_into('<h', h, 252, 1)                # qform_code 1, identity quaternion
    h[344:348] = b'n+1\0'
    rng = np.random.default_rng(0)
    with open(path, 'wb') as f:
        f.write(h)
        for _ in range(nz):
            f.write(rng.integers(-1000, 1500, size=(ny, nx)).astype('<i2').tobytes())


def main():
    p = argparse.ArgumentParser()
    p.add_argument('size', nargs='*', type=int, default=[512, 512, 600])
    p.add_argument('--tool', default='spine-prep')
    p.add_argument('--bin', default=os.path.join(os.path.dirname(__file__), '..', 'build', 'bin'))
    args, extra = p.parse_known_args()
    nx, ny, nz = args.size
    with tempfile.TemporaryDirectory(prefix='spine-bench-mem-') as tmp:
        image = os.path.join(tmp, 'big.nii')
        write_nifti(image, nx, ny, nz)
        cmd = [os.path.join(args.bin, args.tool), image, '-o', os.path.join(tmp, 'out'), '-q'] + extra
        t0 = time.time()
        rc = subprocess.call(cmd)
        wall = time.time() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    voxels = nx * ny * nz
    print(f'{args.tool} {nx}x{ny}x{nz} int16 ({voxels / 1e6:.1f} M voxels): exit {rc}, {wall:.1f} s, '
          f'peak RSS {peak / 2**30:.2f} GiB = {peak / voxels:.1f} bytes/voxel; '
          f'--max-memory reading estimate {(4 * voxels + (1 << 20)) / 2**30:.2f} GiB')
    return rc


if __name__ == '__main__':
    sys.exit(main())
