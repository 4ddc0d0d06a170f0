#!/usr/bin/env bash
# Build the Docker image of VWED script kernels from this machine's files: no registry, no
# base image, no Dockerfile. A root file system is assembled here (a Python interpreter and
# its standard library, the shared libraries they load, a virtual environment with this
# repository's packages, gateway_provisioners' kernel launcher, deploy/docker/entrypoint.py)
# and handed to `docker import` (docs/scaling.md, "Docker").
#
#   deploy/docker/build-kernel-image.sh [IMAGE]          (default vwed-kernel:latest)
#
# VWED_IMAGE_PYTHON  the interpreter copied into the image (default /usr/bin/python3; its
#                    standard library and shared libraries come with it)
# VWED_IMAGE_PIP     the pip that installs the packages for it (default: "$VWED_IMAGE_PYTHON
#                    -m pip"; any pip of the same Python X.Y, e.g. ".venv/bin/python -m pip")
# VWED_IMAGE_SOURCE  what pip installs (default: this checkout, with the sandbox extra)
# VWED_IMAGE_GP_VERSION  the gateway_provisioners whose launcher goes in (default: the newest;
#                    give the gateway's own version, which must understand it)
set -euo pipefail
image=${1:-vwed-kernel:latest}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
py=$(readlink -f "${VWED_IMAGE_PYTHON:-/usr/bin/python3}")
pip=${VWED_IMAGE_PIP:-"$py -m pip"}
ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
full=$("$py" -c 'import platform; print(platform.python_version())')
stdlib=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
dynload=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["platstdlib"])')/lib-dynload
case "$($pip --version)" in
*"(python $ver)") ;;
*) echo "VWED_IMAGE_PIP ($pip) is not a pip of Python $ver ($py)" >&2; exit 2 ;;
esac
command -v docker >/dev/null || { echo "docker is not installed" >&2; exit 2; }
docker version --format '{{.Server.Version}}' >/dev/null || { echo "no Docker daemon answers" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/vwed-image-XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{etc,tmp,proc,sys,dev,opt/vwed/launchers}
chmod 1777 "$root/tmp"
put() { mkdir -p "$root$(dirname "$1")" && cp -L "$1" "$root$1"; }  # a file, at its path

# the interpreter and its standard library (without its own tests and GUI)
put "$py"
tar -C / --exclude='*/test' --exclude='*/idlelib' --exclude='*/tkinter' --exclude='*/turtledemo' \
    --exclude='*/__pycache__' --exclude='*/site-packages' --exclude='*/dist-packages' \
    -cf - "${stdlib#/}" "${dynload#/}" | tar -C "$root" -xf -

# a virtual environment for it, with the VWED packages (pyvenv.cfg by hand: Debian's Python
# has no ensurepip, and nothing of the venv module is needed beyond this file)
venv=/opt/vwed/venv
site=$root$venv/lib/python$ver/site-packages
mkdir -p "$root$venv/bin" "$site"
ln -s "$py" "$root$venv/bin/python"
printf 'home = %s\ninclude-system-site-packages = false\nversion = %s\n' \
    "$(dirname "$py")" "$full" >"$root$venv/pyvenv.cfg"
if [ -n "${VWED_IMAGE_SOURCE:-}" ]; then
    source=$VWED_IMAGE_SOURCE
else  # a copy: a build in the checkout would leave build/ and *.egg-info there
    mkdir "$work/src"
    tar -C "$repo" --exclude=__pycache__ --exclude=node_modules -cf - pyproject.toml README.md \
        jupyter-config kernel_gateway vwed_kernel vwed_lab vwed_client | tar -C "$work/src" -xf -
    source="$work/src[sandbox]"
fi
# pycryptodomex: the launcher encrypts the connection info it sends back with it
$pip install -q --disable-pip-version-check --no-warn-script-location --target "$site" \
    "$source" pycryptodomex
rm -rf "$site/bin"

# gateway_provisioners' Python kernel launcher and the listener beside it (the package ships
# a placeholder listener there; the real one is in shared/, as its own bootstrap assembles it)
$pip install -q --disable-pip-version-check --no-deps --target "$work/gp" \
    "gateway_provisioners${VWED_IMAGE_GP_VERSION:+==$VWED_IMAGE_GP_VERSION}"
launchers=$work/gp/gateway_provisioners/kernel-launchers
cp "$launchers/python/scripts/launch_ipykernel.py" "$root/opt/vwed/launchers/"
cp "$launchers/shared/scripts/server_listener.py" "$root/opt/vwed/launchers/"
cp "$here/entrypoint.py" "$root/opt/vwed/entrypoint.py"

# the shared libraries all of it loads (libseccomp through ctypes: named here), with the
# dynamic loader; ldconfig and its cache so that ctypes.util.find_library finds them
extra=()
for lib in libseccomp.so.2; do
    found=$(/sbin/ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64|64bit/ {print $NF; exit}')
    [ -n "$found" ] && extra+=("$found")
done
{
    for f in "$py" "${extra[@]}" $(find "$root" -name '*.so*' -type f); do
        ldd "$f" 2>/dev/null | awk '/=> \// {print $3} /^[[:space:]]*\// {print $1}'
    done
    printf '%s\n' "${extra[@]}"
} | grep -v "^$root" | sort -u | while read -r lib; do
    put "$lib"
done
mkdir -p "$root/sbin"
cp /sbin/ldconfig "$root/sbin/ldconfig"
printf '/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n/lib64\n' >"$root/etc/ld.so.conf"
/sbin/ldconfig -r "$root"

# who the kernel is: gateway_provisioners runs it as uid 1000, gid 100 (KERNEL_UID/GID)
printf 'root:x:0:0:root:/root:/nonexistent\nvwed:x:1000:100:VWED kernel:/tmp:/nonexistent\n' >"$root/etc/passwd"
printf 'root:x:0:\nusers:x:100:vwed\n' >"$root/etc/group"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"

tar -C "$root" --numeric-owner --owner=0 --group=0 -cf "$work/rootfs.tar" .
docker import \
    --change 'CMD ["/opt/vwed/venv/bin/python", "-E", "-s", "/opt/vwed/entrypoint.py"]' \
    --change 'ENV PATH=/opt/vwed/venv/bin:/usr/bin:/bin HOME=/tmp LANG=C.UTF-8' \
    --change 'ENV KERNEL_LANGUAGE=python' \
    --change 'USER 1000:100' \
    --message "VWED script kernel (deploy/docker/build-kernel-image.sh)" \
    "$work/rootfs.tar" "$image" >/dev/null
echo "built $image ($(du -sh "$work/rootfs.tar" | cut -f1) root file system, Python $full)"
