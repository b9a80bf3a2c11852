"""`netviz audit`: is the model right for the right reasons, over a whole data set.

One pass collects per image its prediction, a compact attribution map and a layer's activations
(:mod:`~netviz.audit.collect`); each class's images are clustered (:mod:`~netviz.audit.clusters`);
each cluster's region is tested for a shortcut: a pattern that most of the cluster shares, the
rest of the data lacks, and that alone makes other images this class (:mod:`~netviz.audit.evidence`).
"""

from netviz.audit.collect import Collected, collect_split, feature_layer
from netviz.audit.evidence import Evidence, region, weigh
from netviz.audit.run import Audit, ClassAudit, Cluster, audit_data, audit_run

__all__ = ["Audit", "ClassAudit", "Cluster", "Collected", "Evidence", "audit_data", "audit_run", "collect_split",
           "feature_layer", "region", "weigh"]
