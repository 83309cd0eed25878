"""FHIR resource type codes used on chain (MedLedger stores a record's type as a uint16).

The code of a type is its position in RESOURCE_TYPES plus one; code 0 means "all types" in a
resource-type grant. The codes are part of the on-chain format: this tuple is append-only
(new FHIR releases add types at the end; never reorder or remove).
"""

from __future__ import annotations

ALL_RESOURCE_TYPES = 0

# FHIR R4 (4.0.1) resource types, in the spec's alphabetical order.
RESOURCE_TYPES: tuple[str, ...] = (
    "Account", "ActivityDefinition", "AdverseEvent", "AllergyIntolerance", "Appointment",
    "AppointmentResponse", "AuditEvent", "Basic", "Binary", "BiologicallyDerivedProduct",
    "BodyStructure", "Bundle", "CapabilityStatement", "CarePlan", "CareTeam", "CatalogEntry",
    "ChargeItem", "ChargeItemDefinition", "Claim", "ClaimResponse", "ClinicalImpression",
    "CodeSystem", "Communication", "CommunicationRequest", "CompartmentDefinition",
    "Composition", "ConceptMap", "Condition", "Consent", "Contract", "Coverage",
    "CoverageEligibilityRequest", "CoverageEligibilityResponse", "DetectedIssue", "Device",
    "DeviceDefinition", "DeviceMetric", "DeviceRequest", "DeviceUseStatement",
    "DiagnosticReport", "DocumentManifest", "DocumentReference", "EffectEvidenceSynthesis",
    "Encounter", "Endpoint", "EnrollmentRequest", "EnrollmentResponse", "EpisodeOfCare",
    "EventDefinition", "Evidence", "EvidenceVariable", "ExampleScenario",
    "ExplanationOfBenefit", "FamilyMemberHistory", "Flag", "Goal", "GraphDefinition", "Group",
    "GuidanceResponse", "HealthcareService", "ImagingStudy", "Immunization",
    "ImmunizationEvaluation", "ImmunizationRecommendation", "ImplementationGuide",
    "InsurancePlan", "Invoice", "Library", "Linkage", "List", "Location", "Measure",
    "MeasureReport", "Media", "Medication", "MedicationAdministration", "MedicationDispense",
    "MedicationKnowledge", "MedicationRequest", "MedicationStatement", "MedicinalProduct",
    "MedicinalProductAuthorization", "MedicinalProductContraindication",
    "MedicinalProductIndication", "MedicinalProductIngredient", "MedicinalProductInteraction",
    "MedicinalProductManufactured", "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical", "MedicinalProductUndesirableEffect", "MessageDefinition",
    "MessageHeader", "MolecularSequence", "NamingSystem", "NutritionOrder", "Observation",
    "ObservationDefinition", "OperationDefinition", "OperationOutcome", "Organization",
    "OrganizationAffiliation", "Parameters", "Patient", "PaymentNotice",
    "PaymentReconciliation", "Person", "PlanDefinition", "Practitioner", "PractitionerRole",
    "Procedure", "Provenance", "Questionnaire", "QuestionnaireResponse", "RelatedPerson",
    "RequestGroup", "ResearchDefinition", "ResearchElementDefinition", "ResearchStudy",
    "ResearchSubject", "RiskAssessment", "RiskEvidenceSynthesis", "Schedule",
    "SearchParameter", "ServiceRequest", "Slot", "Specimen", "SpecimenDefinition",
    "StructureDefinition", "StructureMap", "Subscription", "Substance", "SubstanceNucleicAcid",
    "SubstancePolymer", "SubstanceProtein", "SubstanceReferenceInformation",
    "SubstanceSourceMaterial", "SubstanceSpecification", "SupplyDelivery", "SupplyRequest",
    "Task", "TerminologyCapabilities", "TestReport", "TestScript", "ValueSet",
    "VerificationResult", "VisionPrescription",
)

_CODES = {name: code for code, name in enumerate(RESOURCE_TYPES, 1)}


def resource_type_code(resource_type: str | int) -> int:
    """The on-chain code of a FHIR resource type name (an int is checked and returned)."""
    if isinstance(resource_type, bool):
        raise ValueError(f"not a resource type: {resource_type!r}")
    if isinstance(resource_type, int):
        if not 0 <= resource_type <= len(RESOURCE_TYPES):
            raise ValueError(f"unknown resource type code {resource_type}")
        return resource_type
    try:
        return _CODES[resource_type]
    except KeyError:
        raise ValueError(f"unknown FHIR resource type {resource_type!r}") from None


def resource_type_name(code: int) -> str:
    """The FHIR resource type name of an on-chain code ("*" for 0, all types)."""
    if code == ALL_RESOURCE_TYPES:
        return "*"
    if not 1 <= code <= len(RESOURCE_TYPES):
        raise ValueError(f"unknown resource type code {code}")
    return RESOURCE_TYPES[code - 1]
