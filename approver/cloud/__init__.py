"""The VPCEP client: signer, transport, pagination, error tree, retries, credentials."""
