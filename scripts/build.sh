#!/usr/bin/env bash
# Builds the module, the key tool and the unit tests in the source tree.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
    autoreconf -fi
fi
if [ ! -f Makefile ] || [ configure -nt Makefile ]; then
    ./configure --quiet
fi
make -j"$(nproc)"
