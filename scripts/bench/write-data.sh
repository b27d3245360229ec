#!/bin/sh
# Runs inside the bench container (busybox sh): writes RANDOM_MB MiB from
# /dev/urandom and COMP_BYTES compressible bytes (half copies of the static
# busybox binary, like executables and libraries; half `seq` text, like
# sources and logs), in files of at most 16 MiB, then prints per kind:
# "KIND FILES KIB".
#   write-data.sh RANDOM_MB COMP_BYTES
set -e
bb=busybox
mkdir -p /bench/random /bench/bin /bench/text
left=$1; i=0
while [ "$left" -gt 0 ]; do
    n=16; [ "$left" -lt 16 ] && n=$left
    $bb dd if=/dev/urandom of=/bench/random/r-$i bs=1048576 count=$n 2>/dev/null
    left=$((left - n)); i=$((i + 1))
done
size=$($bb stat -c %s /bin/busybox)
copies=$(($2 / 2 / size)); i=0
while [ "$i" -lt "$copies" ]; do $bb cp /bin/busybox /bench/bin/busybox-$i; i=$((i + 1)); done
left=$(($2 - copies * size)); i=0
while [ "$left" -gt 0 ]; do
    n=16777216; [ "$left" -lt "$n" ] && n=$left
    $bb seq $((i * 2000000 + 1)) 999999999999 | $bb head -c "$n" >/bench/text/t-$i
    left=$((left - n)); i=$((i + 1))
done
$bb sync
for d in random bin text; do
    echo "$d $($bb find /bench/$d -type f | $bb wc -l) $($bb du -sk /bench/$d | $bb cut -f1)"
done
