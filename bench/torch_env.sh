# Shared setup of the PyTorch comparisons (sourced by bench/run_vs_pytorch.sh and
# bench/run_recurrence_vs_torch.sh; not run on its own).
#
# PyTorch comes from Debian's python3-torch, run by /usr/bin/python3 (the default python3 on
# the development machines is a pyenv build without torch).  Debian's torch links the reference
# (netlib) BLAS through the libblas.so.3 alternative, which makes its dense layers very slow; so
# the benchmarks also run it against OpenBLAS, unpacked locally from the libopenblas0-pthread
# .deb (apt-get download + dpkg -x into the build dir: no system change), and compare hwnas with
# the faster of the two.

# torch_env_setup BUILD_DIR THREADS
# Sets PY (the interpreter with torch) and OPENBLAS_LIB (a directory holding OpenBLAS's
# libblas.so.3, empty when unavailable or when OPENBLAS=0), and exports the thread settings
# both implementations run under.
torch_env_setup() {
  local build_dir="$1" threads="$2"
  PY=/usr/bin/python3
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if ! $PY -c "import torch" 2>/dev/null; then
    echo "[bench] installing python3-torch"
    $sudo apt-get install -y python3-torch >/dev/null
  fi
  mkdir -p "$build_dir"
  OPENBLAS_LIB=""
  if [ "${OPENBLAS:-1}" != 0 ]; then
    if [ -f /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 ]; then
      OPENBLAS_LIB=/usr/lib/x86_64-linux-gnu/openblas-pthread
    else
      local dl="$build_dir/openblas"
      if [ ! -f "$dl/root/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3" ]; then
        mkdir -p "$dl"
        (cd "$dl" && apt-get download libopenblas0-pthread >/dev/null 2>&1 &&
           dpkg -x libopenblas0-pthread_*.deb root) || echo "[bench] OpenBLAS unavailable; skipping that variant"
      fi
      [ -f "$dl/root/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3" ] &&
        OPENBLAS_LIB="$(cd "$dl/root/usr/lib/x86_64-linux-gnu/openblas-pthread" && pwd)"
    fi
  fi
  # Waiting threads sleep instead of spinning: on a shared, busy machine OpenMP's default spin
  # barriers (and OpenBLAS's own threads) would otherwise slow PyTorch down by 10x or more.
  export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads"
}

# torch_run_openblas CMD...: runs CMD with OpenBLAS in front of the reference BLAS.
torch_run_openblas() {
  LD_LIBRARY_PATH="$OPENBLAS_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"
}

# torch_build_bench BUILD_DIR TARGET THREADS: configures BUILD_DIR if needed and builds TARGET.
torch_build_bench() {
  local build_dir="$1" target="$2" threads="$3"
  if [ ! -f "$build_dir/CMakeCache.txt" ]; then
    cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
  cmake --build "$build_dir" --target "$target" -j"$threads" >/dev/null
}
