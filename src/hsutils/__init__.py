"""hsutils: customer health scores for B2B SaaS teams on HubSpot, fitted on and validated against churn."""

__version__ = "0.1.0"
