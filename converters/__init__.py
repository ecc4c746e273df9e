"""docker2aci: Docker/OCI images to App Container Images."""
