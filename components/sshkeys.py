"""The admin's SSH key pair, checked before any step uses it.

A private key that does not belong to `hakube:ssh.publicKey` would lock the
stack out: nodes authorize the public key, every step connects with the
private one and the command provider retries a refused login for minutes
before it fails (ENGINE.md: auth errors are dial errors). So the pair is
compared here, in the program, and a mismatch fails the run before any
step can start. `cryptography` (PyCA) reads OpenSSH and PEM private keys.
"""
from __future__ import annotations

from cryptography.hazmat.primitives import serialization as ser


class KeyProblem(ValueError):
    """A key that cannot be used, with the config key it came from."""


def public_line(private_text: str, key: str = "hakube:sshPrivateKey") -> str:
    """`ssh-ed25519 AAAA...` of a private key (OpenSSH or PEM, unencrypted)."""
    data = private_text.strip().encode() + b"\n"
    try:
        if b"BEGIN OPENSSH PRIVATE KEY" in data:
            private = ser.load_ssh_private_key(data, password=None)
        else:
            private = ser.load_pem_private_key(data, password=None)
    except TypeError as err:            # "Password was not given but private key is encrypted"
        raise KeyProblem(f"{key} is protected by a passphrase; the command provider needs the key "
                         "unencrypted (ssh-keygen -p -N '' -f <file> on a copy)") from err
    except (ValueError, ser.UnsupportedAlgorithm) as err:
        raise KeyProblem(f"{key} is not a private key hakube can read (OpenSSH or PEM, unencrypted): "
                         f"{err}") from err
    return private.public_key().public_bytes(ser.Encoding.OpenSSH, ser.PublicFormat.OpenSSH).decode()


def _short(line: str) -> str:
    kind, _, body = line.partition(" ")
    return f"{kind} ...{body.split()[0][-16:]}" if body else line


def checked_pair(private_text: str, public: str) -> str:
    """The private key, when its public half is `public`; else KeyProblem."""
    derived = public_line(private_text)
    if derived.split()[:2] != public.split()[:2]:
        raise KeyProblem(
            f"hakube:sshPrivateKey does not belong to hakube:ssh.publicKey (the private key's public half "
            f"is {_short(derived)}, the configured public key {_short(public)}): no node would accept it. "
            "Set both from one key pair: pulumi config set hakube:ssh.publicKey \"$(cat key.pub)\"; "
            "pulumi config set --secret hakube:sshPrivateKey < key")
    return private_text


def checked_previous(private_text: str, current_public: str) -> str:
    """The rotation's previous key: readable, and another key than the new one."""
    derived = public_line(private_text, "hakube:sshPreviousPrivateKey")
    if derived.split()[:2] == current_public.split()[:2]:
        raise KeyProblem("hakube:sshPreviousPrivateKey is the same key as hakube:sshPrivateKey: nothing "
                         "to rotate. Remove it: pulumi config rm hakube:sshPreviousPrivateKey")
    return private_text
