"""The oomguard.io/v1alpha1 API: pydantic models, the single source of the CRD schemas."""

from oomguard.api.decision import (
    TERMINAL_PHASES,
    OOMDecision,
    OOMDecisionSpec,
    OOMDecisionStatus,
    PodRef,
    RankedGroup,
    Trigger,
    VictimGroup,
    VictimStatus,
)
from oomguard.api.meta import (
    API_VERSION,
    DECISIONS,
    GROUP,
    POLICIES,
    PRIORITIES,
    REPORTS,
    VERSION,
    LabelSelector,
    ObjectMeta,
)
from oomguard.api.policy import DEFAULT_POLICY, Action, OOMPolicy, OOMPolicySpec, Pressure
from oomguard.api.priority import OOMPriority, OOMPrioritySpec, Preference
from oomguard.api.quantity import parse_quantity, resolve_amount
from oomguard.api.report import (
    ContainerMemory,
    MemoryUsage,
    NodeMemory,
    NodeMemoryReport,
    NodeMemoryReportStatus,
    NodePSI,
    PodMemory,
)

__all__ = [
    "API_VERSION",
    "DECISIONS",
    "DEFAULT_POLICY",
    "GROUP",
    "POLICIES",
    "PRIORITIES",
    "REPORTS",
    "TERMINAL_PHASES",
    "VERSION",
    "Action",
    "ContainerMemory",
    "LabelSelector",
    "MemoryUsage",
    "NodeMemory",
    "NodeMemoryReport",
    "NodeMemoryReportStatus",
    "NodePSI",
    "OOMDecision",
    "OOMDecisionSpec",
    "OOMDecisionStatus",
    "OOMPolicy",
    "OOMPolicySpec",
    "OOMPriority",
    "OOMPrioritySpec",
    "ObjectMeta",
    "PodMemory",
    "PodRef",
    "Preference",
    "Pressure",
    "RankedGroup",
    "Trigger",
    "VictimGroup",
    "VictimStatus",
    "parse_quantity",
    "resolve_amount",
]
