"""One APIRouter per resource: probes, commands, models (versions, lineage), datasets,
governance, audit."""
