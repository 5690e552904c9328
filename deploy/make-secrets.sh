#!/bin/sh
# Writes the secret files docker-compose.yml reads, with random values, into ./secrets (or $1).
# A file that exists already is kept, so running it again changes nothing. docs/deploy.md.
#
# The folder is readable by you alone (0700). The files in it are 0644 because Compose mounts
# each one into the containers as it is, and the services there run as other, non-root users.
set -eu

dir="${1:-secrets}"
umask 022
mkdir -p "$dir"
chmod 700 "$dir"

random() {  # $1 random bytes as hex: a value with no character a URL or a shell would mind
    od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'
}

write() {  # write NAME VALUE: creates $dir/NAME unless it exists
    if [ -e "$dir/$1" ]; then
        echo "kept     $dir/$1"
    else
        printf '%s\n' "$2" > "$dir/$1"
        echo "created  $dir/$1"
    fi
}

write redis_password "$(random 24)"
write rabbitmq_password "$(random 24)"
write flower_basic_auth "cutout:$(random 12)"
write serve_tokens "$(random 24)"
write local_private_key "$(random 24)"
# The local API server accepts one key pair: the workers' PublicKey `local-public` with the
# PrivateKey above, so this file follows local_private_key.
write emulator_keys "local-public:$(cat "$dir/local_private_key")"
# Standard Webhooks secret: whsec_ and 24 random bytes in base64 (32 characters).
write webhook_secret "whsec_$(head -c 24 /dev/urandom | base64 | tr -d '\n')"
