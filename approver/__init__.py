"""vpcep-approver: policy-driven approval of Huawei Cloud VPC Endpoint connections."""

__version__ = "0.1.0"
