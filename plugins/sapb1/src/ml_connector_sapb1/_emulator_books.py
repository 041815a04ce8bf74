"""One SAP Business One company's data and the business rules the emulator applies to it.

Facts: shared/api/sapb1.md (§n). Everything here is in Python values (see ``_emulator_model``);
rules the Service Layer would refuse raise :class:`B1Error` (HTTP) or ``ValueError`` (the test
helpers, which call the same code).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from ml_connector_sapb1._emulator_model import (
    AUTHORIZATION,
    BUSINESS_PARTNER,
    CHART_OF_ACCOUNT,
    DOC_TYPE,
    DOCUMENT,
    DOCUMENT_LINE,
    PAYMENT,
    Row,
    coerce_record,
    money,
)

__all__ = [
    "DOCUMENT_EDITABLE",
    "PARTNER_EDITABLE",
    "B1Error",
    "Books",
    "DocumentSet",
    "line_inputs",
]

ZERO = Decimal(0)
HUNDRED = Decimal(100)

#: Object type, first DocNum and Series of each document set the emulator keeps.
#: DocNum differs from DocEntry on purpose: payments apply by DocEntry (§5), never DocNum.
_NUMBERING = {
    "PurchaseInvoices": ("oPurchaseInvoices", 5000, 13),
    "Drafts": ("oPurchaseInvoices", 9000, 13),
    "PurchaseOrders": ("oPurchaseOrders", 3000, 12),
}

_MEMO = {
    "PurchaseInvoices": "A/P Invoices",
    "Drafts": "A/P Invoices",
    "PurchaseOrders": "Purchase Orders",
}
_COSTING = ("CostingCode", "CostingCode2", "CostingCode3", "CostingCode4", "CostingCode5")

#: What a document line takes as input (the rest B1 computes).
_LINE_INPUT = frozenset(
    {
        "ItemCode", "ItemDescription", "Quantity", "Price", "LineTotal", "AccountCode",
        *_COSTING, "ProjectCode", "TaxCode", "VatGroup", "TaxTotal", "FreeText",
    }
)  # fmt: skip


def line_inputs(line: Row) -> Row:
    """The properties of a stored line that a new line takes (the rest B1 computes)."""
    return {k: v for k, v in line.items() if k in _LINE_INPUT}


#: Statuses a document can have where B1 keeps added documents (not drafts): documents that
#: await approval or were rejected are drafts (the brief; §5 calls the workflow UNCONFIRMED).
_ADDED_STATUSES = frozenset(
    {"dasWithout", "dasApproved", "dasGenerated", "dasGeneratedbyAuthorizer"}
)

#: Properties of a document a clerk (or PATCH) may change; the rest are B1's to keep.
DOCUMENT_EDITABLE = frozenset(
    {
        "DocDate", "DocDueDate", "TaxDate", "NumAtCard", "Comments", "JournalMemo",
        "Reference2", "Project", "PaymentBlock", "VatSum", "DocumentLines",
    }
)  # fmt: skip
#: Properties of a business partner PATCH may change (the key and stamps are B1's).
PARTNER_EDITABLE = frozenset(
    set(BUSINESS_PARTNER.fields)
    - {"CardCode", "CreateDate", "CreateTime", "UpdateDate", "UpdateTime", "DataVersion"}
)


class B1Error(Exception):
    """A request the Service Layer refuses: HTTP status, B1 error code, message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _business(message: str) -> B1Error:
    # -5002: the generic business-validation error, 400 (§3, CORROBORATED).
    return B1Error(400, -5002, message)


@dataclass
class DocumentSet:
    """``PurchaseInvoices``, ``Drafts`` or ``PurchaseOrders``: rows by DocEntry."""

    name: str
    rows: dict[int, Row]
    next_entry: int = 1
    next_num: int = 1


class Books:
    """A company database: partners, chart, dimensions, documents and payments.

    Args:
        local_now: The company's local time now (UpdateDate/UpdateTime are stamped from it).
        currency: The local currency code.
        default_item_account: The G/L account of item lines that name none (B1 takes it from
            the item's G/L account determination, which the emulator does not model).
        cancellation_documents: Whether cancelling an invoice adds its cancellation document.
    """

    def __init__(
        self,
        local_now: Callable[[], datetime],
        *,
        currency: str = "USD",
        default_item_account: str = "1400",
        cancellation_documents: bool = True,
    ) -> None:
        self.local_now = local_now
        self.currency = currency
        self.default_item_account = default_item_account
        self.cancellation_documents = cancellation_documents
        self.partners: dict[str, Row] = {}
        self.accounts: dict[str, Row] = {}
        self.profit_centers: dict[str, Row] = {}
        self.distribution_rules: dict[str, Row] = {}
        self.documents = {
            name: DocumentSet(name, {}, next_num=first)
            for name, (_, first, _) in _NUMBERING.items()
        }
        self.payments: dict[int, Row] = {}
        self._next_payment = 1

    @property
    def invoices(self) -> dict[int, Row]:
        """``PurchaseInvoices`` by DocEntry."""
        return self.documents["PurchaseInvoices"].rows

    @property
    def drafts(self) -> dict[int, Row]:
        """``Drafts`` by DocEntry."""
        return self.documents["Drafts"].rows

    @property
    def orders(self) -> dict[int, Row]:
        """``PurchaseOrders`` by DocEntry."""
        return self.documents["PurchaseOrders"].rows

    def stamp(self) -> tuple[date, time]:
        """UpdateDate and UpdateTime for a write now.

        The emulator keeps seconds (B1 10's OPCH.UpdateTS holds HHMMSS: general B1 knowledge,
        UNCONFIRMED); filters compare hours and minutes only (§6).
        """
        now = self.local_now()
        return now.date(), now.time().replace(microsecond=0, tzinfo=None)

    def _touch(self, record: Row) -> None:
        record["UpdateDate"], record["UpdateTime"] = self.stamp()
        record["DataVersion"] = int(record.get("DataVersion") or 0) + 1

    # --- Business partners, chart, dimensions ----------------------------------------------------

    def add_partner(self, card_code: str, card_type: str, name: str, fields: Row) -> Row:
        """Add a business partner; a taken code is B1's -10 (SAP-UG §3.5.1)."""
        if not card_code or len(card_code) > 15:
            raise ValueError(f"CardCode {card_code!r} must have 1 to 15 characters")
        if card_code in self.partners:
            raise B1Error(
                400,
                -10,
                f"1320000140 - Business partner code '{card_code}' already assigned to a "
                "business partner; enter a unique business partner code",
            )
        today, now = self.stamp()
        record: Row = {
            "CardCode": card_code, "CardName": name, "CardType": card_type,
            "GroupCode": 101 if card_type == "cSupplier" else 100, "EmailAddress": None,
            "Phone1": None, "Address": None, "City": None, "ZipCode": None, "Country": "US",
            "FederalTaxID": None, "Currency": self.currency, "Valid": "tYES", "Frozen": "tNO",
            "PayTermsGrpCode": -1, "DebitorAccount": None, "VatGroup": None,
            "CreateDate": today, "CreateTime": now, "UpdateDate": today, "UpdateTime": now,
            "DataVersion": 1, "BPAddresses": [], "BPBankAccounts": [],
        }  # fmt: skip
        record.update(coerce_record(BUSINESS_PARTNER, fields))
        record["CardCode"] = card_code
        self.partners[card_code] = record
        return record

    def patch_partner(self, card_code: str, fields: Row, *, replace: bool = False) -> None:
        """Change a partner's properties (PATCH; ``replace``: PUT resets the ones left out)."""
        record = self.partners[card_code]
        values = coerce_record(BUSINESS_PARTNER, fields)
        if values.get("CardCode", card_code) != card_code:
            raise _business("The business partner code cannot be changed")
        values.pop("CardCode", None)
        stamps = ("CreateDate", "CreateTime", "UpdateDate", "UpdateTime", "DataVersion")
        if any(name in values for name in stamps):
            raise _business("Stamps and the data version are kept by the system")
        if replace:
            keep = {"CardCode", "CardType", *stamps}
            for name in PARTNER_EDITABLE - keep - set(values):
                record[name] = [] if name in ("BPAddresses", "BPBankAccounts") else None
        record.update(values)
        self._touch(record)

    def add_account(self, code: str, name: str, active: bool, fields: Row) -> Row:
        """Add a G/L account.

        ``ActiveAccount`` tYES is a postable account and tNO a title account (general B1
        knowledge, UNCONFIRMED, §5); an inactive account is ``FrozenFor`` tYES with
        ``ValidFor`` tNO. ``active=False`` makes an inactive postable account.
        """
        if code in self.accounts:
            raise ValueError(f"account {code} exists")
        record: Row = {
            "Code": code, "Name": name, "FormatCode": code, "AcctCurrency": self.currency,
            "Balance": ZERO, "ActiveAccount": "tYES", "AccountType": "at_Expenses",
            "FatherAccountKey": None, "AccountLevel": 2, "CashAccount": "tNO",
            "LockManualTransaction": "tNO", "ValidFor": "tYES" if active else "tNO",
            "FrozenFor": "tNO" if active else "tYES",
        }  # fmt: skip
        record.update(coerce_record(CHART_OF_ACCOUNT, fields))
        self.accounts[code] = record
        return record

    def add_profit_center(self, code: str, name: str, dimension: int, active: bool) -> Row:
        """Add a profit center and its direct distribution rule.

        B1 gives each profit center a "direct" distribution rule of the same code, which is
        what a line's CostingCode names (general B1 knowledge, UNCONFIRMED here).
        """
        if not 1 <= dimension <= 5:
            raise ValueError("InWhichDimension is 1 to 5")
        if code in self.profit_centers or code in self.distribution_rules:
            raise ValueError(f"profit center or distribution rule {code} exists")
        flag = "tYES" if active else "tNO"
        record: Row = {
            "CenterCode": code, "CenterName": name, "GroupCode": None,
            "InWhichDimension": dimension, "CostCenterType": None,
            "EffectiveFrom": date(2020, 1, 1), "EffectiveTo": None, "Active": flag,
            "CenterOwner": None,
        }  # fmt: skip
        self.profit_centers[code] = record
        self.distribution_rules[code] = {
            "FactorCode": code, "FactorDescription": name, "InWhichDimension": dimension,
            "Active": flag, "TotalFactor": HUNDRED, "Direct": "tYES", "IsFixedAmount": "tNO",
            "DistributionRuleLines": [
                {"LineNumber": 0, "CenterCode": code, "TotalInCenter": HUNDRED,
                 "EffectiveFrom": date(2020, 1, 1), "EffectiveTo": None},
            ],
        }  # fmt: skip
        return record

    def add_distribution_rule(
        self, code: str, name: str, dimension: int, centers: dict[str, Decimal], active: bool
    ) -> Row:
        """Add a distribution rule spreading over profit centers of its dimension."""
        if code in self.distribution_rules:
            raise ValueError(f"distribution rule {code} exists")
        for center in centers:
            found = self.profit_centers.get(center)
            if found is None or found["InWhichDimension"] != dimension:
                raise ValueError(f"{center} is no profit center of dimension {dimension}")
        total = sum(centers.values(), ZERO)
        record: Row = {
            "FactorCode": code, "FactorDescription": name, "InWhichDimension": dimension,
            "Active": "tYES" if active else "tNO", "TotalFactor": total, "Direct": "tNO",
            "IsFixedAmount": "tNO",
            "DistributionRuleLines": [
                {"LineNumber": i, "CenterCode": c, "TotalInCenter": Decimal(share),
                 "EffectiveFrom": date(2020, 1, 1), "EffectiveTo": None}
                for i, (c, share) in enumerate(centers.items())
            ],
        }  # fmt: skip
        self.distribution_rules[code] = record
        return record

    # --- Documents -------------------------------------------------------------------------------

    def _postable(self, code: Any, where: str) -> str:
        account = self.accounts.get(code) if isinstance(code, str) else None
        if account is None:
            raise ValueError(f"{where}: G/L account {code!r} does not exist")
        if account["ActiveAccount"] != "tYES":
            raise ValueError(f"{where}: G/L account {code} is a title account")
        if account["FrozenFor"] == "tYES":
            raise ValueError(f"{where}: G/L account {code} is inactive")
        return str(code)

    def _lines(self, doc_type: str, lines: Iterable[Row], doc_entry: int) -> list[Row]:
        """Document lines as B1 keeps them, checked against the document type.

        Service documents (``dDocument_Service``) carry ``AccountCode`` + ``ItemDescription``
        and a ``LineTotal``, no ``ItemCode`` (§5; §8: "enforce service-type rules"); item
        documents carry ``ItemCode``, ``Quantity``, ``Price`` and the ``AccountCode`` the line
        posts to (given, or the emulator's ``default_item_account``). ``CostingCode`` ..
        ``CostingCode5`` name distribution rules of dimensions 1..5 (UNCONFIRMED mapping, §5).
        """
        out: list[Row] = []
        for number, raw in enumerate(lines):
            where = f"line {number}"
            line = coerce_record(DOCUMENT_LINE, raw)
            total = line.get("LineTotal")
            if doc_type == "dDocument_Service":
                if line.get("ItemCode"):
                    raise ValueError(f"{where}: a service document's lines have no ItemCode")
                account = self._postable(line.get("AccountCode"), where)
                if total is None:
                    raise ValueError(f"{where}: LineTotal is required on a service line")
                # UNCONFIRMED: what B1 shows as a service line's Quantity and Price.
                quantity: Decimal | None = ZERO
                price: Decimal | None = ZERO
            else:
                if not line.get("ItemCode"):
                    raise ValueError(f"{where}: an item document's lines need an ItemCode")
                account = self._postable(
                    line.get("AccountCode") or self.default_item_account, where
                )
                quantity, price = line.get("Quantity"), line.get("Price")
                if quantity is None or price is None:
                    raise ValueError(f"{where}: an item line needs Quantity and Price")
                computed = money(quantity * price)
                if total is not None and money(total) != computed:
                    raise ValueError(f"{where}: LineTotal {total} is not Quantity x Price")
                total = computed
            for dimension, name in enumerate(_COSTING, start=1):
                code = line.get(name)
                if code:
                    rule = self.distribution_rules.get(code)
                    if rule is None or rule["InWhichDimension"] != dimension:
                        raise ValueError(
                            f"{where}: {name} {code!r} is no distribution rule of dimension "
                            f"{dimension}"
                        )
            tax = line.get("TaxTotal")
            out.append(
                {
                    "LineNum": number, "DocEntry": doc_entry, "ItemCode": line.get("ItemCode"),
                    "ItemDescription": line.get("ItemDescription"), "Quantity": quantity,
                    "Price": price, "UnitPrice": price, "LineTotal": money(total),
                    "RowTotalFC": ZERO, "GrossTotal": None,
                    "TaxTotal": None if tax is None else money(tax), "Currency": self.currency,
                    "AccountCode": account, **{n: line.get(n) for n in _COSTING},
                    "ProjectCode": line.get("ProjectCode"), "TaxCode": line.get("TaxCode"),
                    "VatGroup": line.get("VatGroup"), "LineStatus": "bost_Open",
                    "BaseType": line.get("BaseType", -1), "BaseEntry": line.get("BaseEntry"),
                    "BaseLine": line.get("BaseLine"), "FreeText": line.get("FreeText"),
                }
            )  # fmt: skip
        if not out:
            raise ValueError("a document needs at least one line")
        return out

    @staticmethod
    def _totals(record: Row, vat_sum: Decimal | None) -> None:
        """VatSum over the lines' TaxTotal; DocTotal = sum(LineTotal) + VatSum.

        Lines that state their TaxTotal make the VatSum; otherwise ``vat_sum`` is spread over
        the lines by their totals (the last line takes the rounding), as B1's VatSum is the
        sum of its lines' tax.
        """
        lines = record["DocumentLines"]
        net = sum((line["LineTotal"] for line in lines), ZERO)
        if any(line["TaxTotal"] is not None for line in lines):
            stated = sum((line["TaxTotal"] or ZERO for line in lines), ZERO)
            if vat_sum is not None and vat_sum and money(vat_sum) != stated:
                raise ValueError(f"VatSum {vat_sum} differs from the lines' TaxTotal {stated}")
            for line in lines:
                line["TaxTotal"] = line["TaxTotal"] or ZERO
            vat = stated
        else:
            vat = money(vat_sum or ZERO)
            left = vat
            for line in lines[:-1]:
                share = money(vat * line["LineTotal"] / net) if net else ZERO
                line["TaxTotal"], left = share, left - share
            lines[-1]["TaxTotal"] = left
        for line in lines:
            line["GrossTotal"] = line["LineTotal"] + line["TaxTotal"]
        record["VatSum"] = vat
        record["DocTotal"] = net + vat

    def add_document(
        self,
        set_name: str,
        card_code: str,
        lines: list[Row],
        *,
        doc_type: str,
        num_at_card: str | None,
        authorization: str,
        vat_sum: Decimal | None,
        fields: Row,
    ) -> Row:
        """Add a purchase invoice, draft or purchase order (as a clerk enters it)."""
        documents = self.documents[set_name]
        partner = self.partners.get(card_code)
        if partner is None or partner["CardType"] != "cSupplier":
            raise ValueError(f"{card_code!r} is not a supplier")
        doc_type = DOC_TYPE.parse(doc_type)
        authorization = AUTHORIZATION.parse(authorization)
        if set_name != "Drafts" and authorization not in _ADDED_STATUSES:
            raise ValueError(
                f"{authorization}: a document awaiting approval (or rejected) is a draft in B1; "
                "use add_draft"
            )
        header = coerce_record(DOCUMENT, fields)
        reserved = {"DocEntry", "DocNum", "DocumentLines", "DataVersion", "DocObjectCode"}
        if reserved & set(header):
            raise ValueError(f"{sorted(reserved & set(header))} are set by the system")
        if "VatSum" in header:
            vat_sum = header.pop("VatSum")
        entry, number = documents.next_entry, documents.next_num
        today, now = self.stamp()
        doc_date = header.get("DocDate") or today
        object_code, _, series = _NUMBERING[set_name]
        record: Row = {
            "DocEntry": entry, "DocNum": number, "DocType": doc_type, "DocDate": doc_date,
            "DocDueDate": doc_date + timedelta(days=30), "TaxDate": doc_date,
            "CreationDate": today, "UpdateDate": today, "UpdateTime": now,
            "CardCode": card_code, "CardName": partner["CardName"], "NumAtCard": num_at_card,
            "DocTotal": ZERO, "DocTotalFc": ZERO, "VatSum": ZERO, "DocCurrency": self.currency,
            "DocRate": Decimal(1), "PaidToDate": ZERO, "PaidToDateFC": ZERO,
            "PaidToDateSys": ZERO, "Comments": None,
            "JournalMemo": f"{_MEMO[set_name]} - {card_code}",
            "Series": series, "Reference1": str(number), "Reference2": None, "Project": None,
            "Cancelled": "tNO", "CancelStatus": "csNo", "DocumentStatus": "bost_Open",
            "AuthorizationStatus": authorization, "DocObjectCode": object_code,
            "PaymentBlock": "tNO", "DataVersion": 1,
            "DocumentLines": self._lines(doc_type, lines, entry),
        }  # fmt: skip
        record.update(header)
        self._totals(record, vat_sum)
        documents.rows[entry] = record
        documents.next_entry += 1
        documents.next_num += 1
        return record

    def document(self, set_name: str, doc_entry: int) -> Row:
        """A stored document (the live record); B1Error 404 -2028 if there is none."""
        record = self.documents[set_name].rows.get(doc_entry)
        if record is None:
            raise B1Error(404, -2028, "No matching records found (ODBC -2028)")
        return record

    def update_document(
        self, set_name: str, doc_entry: int, fields: Row, *, replace_lines: bool = True
    ) -> Row:
        """Change a document as a clerk (or PATCH) does; totals follow, the stamps become now.

        ``DocumentLines`` replace the lines (``replace_lines``, as with the header
        ``B1S-ReplaceCollectionsOnPatch: true``), or else merge by ``LineNum``: a row with a
        known LineNum changes that line, one without is added, the others are kept (PATCH's
        default, §4).
        """
        record = self.document(set_name, doc_entry)
        fields = dict(fields)
        lines = fields.pop("DocumentLines", None)
        vat_given = "VatSum" in fields
        header = coerce_record(DOCUMENT, fields)
        vat_sum = header.pop("VatSum", None)
        if "DocEntry" in header and header["DocEntry"] != doc_entry:
            raise ValueError("DocEntry cannot change")
        header.pop("DocEntry", None)
        candidate = copy.deepcopy(record)
        candidate.update(header)
        if lines is not None:
            if not replace_lines:
                lines = self._merged_lines(candidate["DocumentLines"], lines)
            candidate["DocumentLines"] = self._lines(candidate["DocType"], lines, doc_entry)
        if lines is not None or vat_given:
            stated = lines is not None and any(
                line["TaxTotal"] is not None for line in candidate["DocumentLines"]
            )
            if not stated:
                for line in candidate["DocumentLines"]:
                    line["TaxTotal"] = None
            fallback = None if stated else record["VatSum"]
            self._totals(candidate, vat_sum if vat_given else fallback)
        if candidate["DocTotal"] < candidate["PaidToDate"]:
            raise _business("The document total cannot fall below the amount paid")
        record.clear()
        record.update(candidate)
        self._touch(record)
        return record

    @staticmethod
    def _merged_lines(current: list[Row], changes: list[Any]) -> list[Row]:
        merged = {line["LineNum"]: line_inputs(line) for line in current}
        added: list[Row] = []
        for change in changes:
            if not isinstance(change, dict):
                raise ValueError("DocumentLines takes objects")
            number = change.get("LineNum")
            if number is None:
                added.append(dict(change))
                continue
            if number not in merged:
                raise _business(f"Line {number} does not exist")
            row = merged[number]
            if ("Quantity" in change or "Price" in change) and "LineTotal" not in change:
                row.pop("LineTotal", None)  # B1 computes it again
            row.update({k: v for k, v in change.items() if k != "LineNum"})
        rows = [*merged.values(), *added]
        if not any("TaxTotal" in change for change in changes if isinstance(change, dict)):
            for row in rows:
                row.pop("TaxTotal", None)  # the VatSum is spread over the lines again
        return rows

    def cancel_invoice(self, doc_entry: int) -> Row | None:
        """Cancel an A/P invoice as B1 does; returns the cancellation document, if any.

        The invoice becomes ``Cancelled`` tYES, ``CancelStatus`` csYes, closed. B1 also adds a
        cancellation document (CANCELED = 'C' in its table: ``CancelStatus`` csCancellation,
        ``Cancelled`` tNO, closed, same vendor, number and amounts, lines based on the
        invoice's): general B1 knowledge, UNCONFIRMED in sapb1.md; the option
        ``cancellation_documents`` turns it off. A paid invoice cannot be cancelled (cancel
        the payment first); a cancelled one or a cancellation document neither (-5002).
        """
        record = self.document("PurchaseInvoices", doc_entry)
        if record["Cancelled"] == "tYES" or record["CancelStatus"] != "csNo":
            raise _business("Document is already cancelled")
        if record["PaidToDate"] > 0:
            raise _business("Cannot cancel a document with payments; cancel the payments first")
        record.update(Cancelled="tYES", CancelStatus="csYes", DocumentStatus="bost_Close")
        for line in record["DocumentLines"]:
            line["LineStatus"] = "bost_Close"
        self._touch(record)
        if not self.cancellation_documents:
            return None
        documents = self.documents["PurchaseInvoices"]
        entry, number = documents.next_entry, documents.next_num
        today, now = self.stamp()
        reversal = copy.deepcopy(record)
        reversal.update(
            DocEntry=entry, DocNum=number, DocDate=today, TaxDate=today, CreationDate=today,
            UpdateDate=today, UpdateTime=now, Reference1=str(number), Cancelled="tNO",
            CancelStatus="csCancellation", DocumentStatus="bost_Close", DataVersion=1,
            Comments=f"Based on A/P Invoices {record['DocNum']}.",
        )  # fmt: skip
        for line in reversal["DocumentLines"]:
            line.update(DocEntry=entry, BaseType=18, BaseEntry=doc_entry, BaseLine=line["LineNum"])
        documents.rows[entry] = reversal
        documents.next_entry += 1
        documents.next_num += 1
        return reversal

    def approve_draft(self, doc_entry: int, status: str) -> Row:
        """Approve a draft and add the document it becomes (a new DocEntry in its set).

        UNCONFIRMED workflow (§5): the draft is closed and keeps ``dasApproved``; the document
        added from it has ``status``.
        """
        draft = self.document("Drafts", doc_entry)
        if draft["DocumentStatus"] != "bost_Open":
            raise ValueError(f"draft {doc_entry} is closed")
        lines = [line_inputs(line) for line in draft["DocumentLines"]]
        header = {
            k: draft[k] for k in ("DocDate", "DocDueDate", "TaxDate", "Comments", "PaymentBlock")
        }
        target = (
            "PurchaseOrders"
            if draft["DocObjectCode"] == "oPurchaseOrders"
            else ("PurchaseInvoices")
        )
        added = self.add_document(
            target, draft["CardCode"], lines, doc_type=draft["DocType"],
            num_at_card=draft["NumAtCard"], authorization=status, vat_sum=draft["VatSum"],
            fields=header,
        )  # fmt: skip
        draft.update(AuthorizationStatus="dasApproved", DocumentStatus="bost_Close")
        self._touch(draft)
        return added

    # --- Payments --------------------------------------------------------------------------------

    def payment(self, doc_entry: int) -> Row:
        """A stored payment; B1Error 404 -2028 if there is none."""
        record = self.payments.get(doc_entry)
        if record is None:
            raise B1Error(404, -2028, "No matching records found (ODBC -2028)")
        return record

    def _account_for_payment(self, code: Any, what: str) -> str:
        try:
            return self._postable(code, what)
        except ValueError as exc:
            raise _business(str(exc)) from None

    def create_payment(self, body: Row) -> Row:
        """``POST /VendorPayments``: check the payment as B1 does, post it, pay the invoices.

        Validations (codes: -1000 for a property that is not the type's or a value of the
        wrong type, as for queries; -5002 for business rules, §3; wordings UNCONFIRMED):

        - ``DocType`` rSupplier (the default for vendor payments, as the public examples of §5
          leave it out); ``CardCode`` a supplier;
        - each ``PaymentInvoices`` row: ``InvoiceType`` it_PurchaseInvoice (by name or 18; a
          row without it is B1's default it_Invoice, an A/R invoice, and refused here),
          ``DocEntry`` an open, not cancelled purchase invoice of that supplier,
          ``SumApplied`` > 0 and, per invoice, at most its open balance;
        - the means of payment (``TransferSum`` with ``TransferAccount`` and/or ``CashSum``
          with ``CashAccount``; checks, credit cards and account rows are not emulated) add up
          to the applied total (or, without invoices, a payment on account, more than 0).

        No idempotency: the same ``TransferReference`` twice makes two payments (§8).
        """
        body = dict(body)
        for unserved in ("PaymentChecks", "PaymentCreditCards", "PaymentAccounts"):
            rows = body.pop(unserved, None)
            if rows:
                raise _business(f"{unserved} are not emulated: pay by transfer or cash")
        for system in ("DocEntry", "DocNum", "Cancelled", "DocObjectCode"):
            body.pop(system, None)
        try:
            payment = coerce_record(PAYMENT, body)
        except ValueError as exc:
            raise B1Error(400, -1000, str(exc)) from None
        doc_type = payment.get("DocType") or "rSupplier"
        if doc_type != "rSupplier":
            raise _business(f"DocType {doc_type} is not emulated for vendor payments")
        card_code = payment.get("CardCode")
        partner = self.partners.get(card_code or "")
        if partner is None or partner["CardType"] != "cSupplier":
            raise _business(f"Invalid BP code '{card_code}': not a supplier")
        rows = payment.get("PaymentInvoices") or []
        applied: dict[int, Decimal] = {}
        for number, row in enumerate(rows):
            kind = row.get("InvoiceType") or "it_Invoice"
            if kind != "it_PurchaseInvoice":
                raise _business(
                    f"PaymentInvoices row {number}: InvoiceType {kind} is not a purchase "
                    "invoice (only it_PurchaseInvoice is emulated)"
                )
            entry = row.get("DocEntry")
            invoice = self.invoices.get(entry) if isinstance(entry, int) else None
            if invoice is None or invoice["CardCode"] != card_code:
                raise _business(
                    f"PaymentInvoices row {number}: no A/P invoice with DocEntry {entry} "
                    f"for {card_code}"
                )
            if invoice["Cancelled"] == "tYES" or invoice["CancelStatus"] != "csNo":
                raise _business(f"PaymentInvoices row {number}: document {entry} is cancelled")
            if invoice["DocumentStatus"] != "bost_Open":
                raise _business(f"PaymentInvoices row {number}: document {entry} is closed")
            amount = row.get("SumApplied")
            if amount is None or money(amount) <= 0:
                raise _business(f"PaymentInvoices row {number}: SumApplied must be positive")
            applied[entry] = applied.get(entry, ZERO) + money(amount)
            balance = invoice["DocTotal"] - invoice["PaidToDate"]
            if applied[entry] > balance:
                raise _business(
                    f"PaymentInvoices row {number}: the amount applied to document {entry} "
                    f"exceeds its open balance {balance}"
                )
        transfer = money(payment.get("TransferSum") or ZERO)
        cash = money(payment.get("CashSum") or ZERO)
        if transfer < 0 or cash < 0:
            raise _business("Payment amounts cannot be negative")
        if transfer:
            payment["TransferAccount"] = self._account_for_payment(
                payment.get("TransferAccount"), "TransferAccount"
            )
        if cash:
            payment["CashAccount"] = self._account_for_payment(
                payment.get("CashAccount"), "CashAccount"
            )
        total = transfer + cash
        wanted = sum(applied.values(), ZERO)
        if total <= 0:
            raise _business("Enter a means of payment (TransferSum or CashSum)")
        if applied and total != wanted:
            raise _business(
                f"The means of payment ({total}) differ from the amount applied ({wanted})"
            )
        today, _ = self.stamp()
        doc_date = payment.get("DocDate") or today
        entry = self._next_payment
        record: Row = {
            "DocEntry": entry, "DocNum": 2000 + entry, "DocType": "rSupplier",
            "CardCode": card_code, "CardName": partner["CardName"], "DocDate": doc_date,
            "DueDate": doc_date, "TaxDate": doc_date, "VatDate": doc_date,
            "DocCurrency": self.currency, "DocRate": ZERO, "TransferSum": transfer,
            "TransferAccount": None, "TransferDate": None, "TransferReference": None,
            "CashSum": cash, "CashAccount": None, "CheckAccount": None, "Remarks": None,
            "JournalRemarks": f"Outgoing Payments - {card_code}", "CounterReference": None,
            "Reference1": str(2000 + entry), "Reference2": None, "Cancelled": "tNO",
            "Series": 15, "BPLID": None, "ProjectCode": None, "ControlAccount": None,
            "DocObjectCode": "bopot_OutgoingPayments", "AuthorizationStatus": "pasWithout",
        }  # fmt: skip
        record.update({k: v for k, v in payment.items() if k != "PaymentInvoices"})
        record.update(TransferSum=transfer, CashSum=cash, DocType="rSupplier", DocDate=doc_date)
        if transfer and record["TransferDate"] is None:
            record["TransferDate"] = doc_date
        record["PaymentInvoices"] = [
            {
                "LineNum": number, "DocEntry": row["DocEntry"], "DocNum": None,
                "SumApplied": money(row["SumApplied"]), "AppliedFC": ZERO,
                "AppliedSys": money(row["SumApplied"]), "DocRate": ZERO, "DocLine": 0,
                "InvoiceType": "it_PurchaseInvoice", "InstallmentId": 1,
                "DiscountPercent": ZERO, "PaidSum": ZERO, "TotalDiscount": ZERO,
                **{f"DistributionRule{n if n > 1 else ''}": None for n in range(1, 6)},
            }
            for number, row in enumerate(rows)
        ]  # fmt: skip
        for doc_entry, amount in applied.items():
            self._pay(self.invoices[doc_entry], amount)
        self.payments[entry] = record
        self._next_payment += 1
        return record

    def _pay(self, invoice: Row, amount: Decimal) -> None:
        """Raise PaidToDate; fully paid closes the invoice (bost_Close, §7); stamps it."""
        invoice["PaidToDate"] += amount
        invoice["PaidToDateSys"] = invoice["PaidToDate"]
        open_ = invoice["PaidToDate"] < invoice["DocTotal"]
        invoice["DocumentStatus"] = "bost_Open" if open_ else "bost_Close"
        for line in invoice["DocumentLines"]:
            line["LineStatus"] = invoice["DocumentStatus"]
        self._touch(invoice)

    def cancel_payment(self, doc_entry: int) -> None:
        """``POST /VendorPayments(n)/Cancel``: the invoices get their balance back.

        A cancelled payment cannot be cancelled again (-5002; wording UNCONFIRMED, §5).
        """
        record = self.payment(doc_entry)
        if record["Cancelled"] == "tYES":
            raise _business("Document is already cancelled")
        record["Cancelled"] = "tYES"
        for row in record["PaymentInvoices"]:
            invoice = self.invoices.get(row["DocEntry"])
            if invoice is not None:
                self._pay(invoice, -row["SumApplied"])

    def payments_applying_to(self, doc_entry: int, *, include_cancelled: bool) -> list[Row]:
        """The payments with a ``PaymentInvoices`` row on A/P invoice ``doc_entry``."""
        return [
            p
            for p in self.payments.values()
            if (include_cancelled or p["Cancelled"] == "tNO")
            and any(
                r["DocEntry"] == doc_entry and r["InvoiceType"] == "it_PurchaseInvoice"
                for r in p["PaymentInvoices"]
            )
        ]
