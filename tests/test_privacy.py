"""PRIV-1: personal data is masked in notifications, logs, replies and reports.

Tables of inputs and their masked forms for every masker, idempotence of each,
the Luhn guard that keeps order numbers readable, key-based masking of nested
records and the logging filter.
"""

from __future__ import annotations

import logging

import pytest

from aftersales.privacy import (
    MaskingFilter,
    install_log_masking,
    luhn_valid,
    mask_address,
    mask_bank_card,
    mask_email,
    mask_id_number,
    mask_mapping,
    mask_phone,
    mask_text,
    uninstall_log_masking,
)

# -- field maskers --------------------------------------------------------------

PHONES = [
    ("13812345678", "138****5678"),
    ("138 1234 5678", "138****5678"),
    ("138-1234-5678", "138****5678"),
    ("+86 138-1234-5678", "+86 138****5678"),
    ("+8613812345678", "+86 138****5678"),
    ("0086 13812345678", "+86 138****5678"),
    ("010-62345678", "010****5678"),
    ("(0755)88886666", "075*****6666"),
    ("62345678", "****5678"),
    ("+44 20 7946 0958", "+442*****0958"),
    ("12345", "*****"),
]


@pytest.mark.parametrize(("raw", "masked"), PHONES)
def test_phone_keeps_at_most_first_3_and_last_4_digits_PRIV_1(raw: str, masked: str) -> None:
    assert mask_phone(raw) == masked
    assert mask_phone(masked) == masked  # idempotent


IDS = [
    ("11010519900307123X", "110***********123X"),
    ("11010519900307123x", "110***********123X"),
    ("110105199003071234", "110***********1234"),
    ("110105900307123", "110********7123"),  # 15-digit old-style ID
    ("E12345678", "E******78"),  # passport
]


@pytest.mark.parametrize(("raw", "masked"), IDS)
def test_id_number_keeps_first_3_and_last_4_PRIV_1(raw: str, masked: str) -> None:
    assert mask_id_number(raw) == masked
    assert mask_id_number(masked) == masked


CARDS = [
    ("6222600260001072444", "**** **** **** 2444"),
    ("4111 1111 1111 1111", "**** **** **** 1111"),
    ("5555-5555-5555-4444", "**** **** **** 4444"),
    ("6228480012345678903", "**** **** **** 8903"),
]


@pytest.mark.parametrize(("raw", "masked"), CARDS)
def test_bank_card_keeps_only_last_4_digits_PRIV_1(raw: str, masked: str) -> None:
    assert mask_bank_card(raw) == masked
    assert mask_bank_card(masked) == masked


ADDRESSES = [
    ("北京市朝阳区建国路88号SOHO现代城3号楼1201", "北京市朝阳区***"),
    ("广东省深圳市南山区科技园南区深南大道10000号", "广东省深圳市南山区***"),
    ("浙江省杭州市西湖区文三路90号", "浙江省杭州市西湖区***"),
    ("上海市浦东新区张江路1号", "上海市浦东新区***"),
    ("河北省廊坊市三河市燕郊镇迎宾路", "河北省廊坊市三河市***"),
    ("四川省阿坝州汶川县映秀镇", "四川省阿坝州汶川县***"),
    ("新疆维吾尔自治区乌鲁木齐市天山区解放路", "新疆维吾尔自治区乌鲁木齐市天山区***"),
    ("幸福小区5号楼2单元301", "***"),  # a residential compound is not a district
    ("建国路88号", "***"),
    ("北京市朝阳区", "北京市朝阳区"),  # nothing below the district to hide
    ("London, 221B Baker Street", "London ***"),
    ("221B Baker Street, London", "***"),  # a house number is never kept
]


@pytest.mark.parametrize(("raw", "masked"), ADDRESSES)
def test_address_keeps_only_city_and_district_PRIV_1(raw: str, masked: str) -> None:
    assert mask_address(raw) == masked
    assert mask_address(masked) == masked


EMAILS = [
    ("alice@example.com", "a***@example.com"),
    ("zhang.san+aftersales@mail.example.cn", "z***@mail.example.cn"),
    ("13812345678@qq.com", "1***@qq.com"),
]


@pytest.mark.parametrize(("raw", "masked"), EMAILS)
def test_email_keeps_first_letter_and_domain_PRIV_1(raw: str, masked: str) -> None:
    assert mask_email(raw) == masked
    assert mask_email(masked) == masked


# -- free text --------------------------------------------------------------------

TEXTS = [
    ("客户电话13812345678，请回电", "客户电话138****5678，请回电"),
    ("call +86-138-1234-5678 now", "call +86 138****5678 now"),
    ("座机 010-62345678 转人工", "座机 010****5678 转人工"),
    ("身份证 11010519900307123X 已核验", "身份证 110***********123X 已核验"),
    ("refund to 6222600260001072444 please", "refund to **** **** **** 2444 please"),
    ("card 4111-1111-1111-1111 expired", "card **** **** **** 1111 expired"),
    ("mail alice@example.com or bob@example.org", "mail a***@example.com or b***@example.org"),
    ("UK office +44 20 7946 0958", "UK office +442*****0958"),
    # 16 digits failing Luhn: an order number, not a card
    ("订单号 2024051312345678 已发货", "订单号 2024051312345678 已发货"),
    # ticket ids, dates and times are not personal data
    (
        "ticket T-20240513-0001 at 2024-05-13 10:00:00",
        "ticket T-20240513-0001 at 2024-05-13 10:00:00",
    ),
    # digits glued to letters are identifiers, not phones
    ("serial SN13812345678X", "serial SN13812345678X"),
]


@pytest.mark.parametrize(("raw", "masked"), TEXTS)
def test_mask_text_finds_personal_data_in_free_text_PRIV_1(raw: str, masked: str) -> None:
    assert mask_text(raw) == masked


def test_mask_text_is_idempotent_PRIV_1() -> None:
    for raw, _ in TEXTS + PHONES + IDS + CARDS + EMAILS:
        once = mask_text(raw)
        assert mask_text(once) == once, raw


def test_order_number_is_not_masked_as_bank_card_but_a_labelled_card_is_PRIV_1() -> None:
    order = "2024051312345678"
    assert not luhn_valid(order)
    assert mask_text(f"order {order}") == f"order {order}"
    # The same digits after a card label are masked even though Luhn fails.
    assert mask_text(f"银行卡号：{order}") == "银行卡号：**** **** **** 5678"
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("41111111111a1111")


def test_mask_text_leaves_text_without_personal_data_alone_PRIV_1() -> None:
    text = "Ticket T-1 breached INQ-3 (level normal); 3 items, 1000 CNY, due 18:00."
    assert mask_text(text) == text
    assert mask_text("") == ""


# -- records ----------------------------------------------------------------------


def test_mask_mapping_masks_by_key_name_and_recursively_PRIV_1() -> None:
    record = {
        "ticket_id": "T-20240513-0001",
        "customer_name": "张三",
        "contact": "13812345678",
        "customer_phone": 13987654321,  # an int phone is masked too
        "contactEmail": "zhangsan@example.com",
        "id_number": "11010519900307123X",
        "address": "北京市朝阳区建国路88号1201",
        "bank_card": "6222600260001072444",
        "order_no": "2024051312345678",
        "note": "call back on 13812345678",
        "history": [
            {"mobile": "+86 138 1234 5678", "text": "email me at li@example.com"},
            "plain 13612345678",
        ],
        "site": {"home_address": "上海市浦东新区张江路1号", "floor": 3},
        "vip": True,
        "tags": ("a", "b"),
    }
    masked = mask_mapping(record)
    assert masked == {
        "ticket_id": "T-20240513-0001",
        "customer_name": "张三",
        "contact": "138****5678",
        "customer_phone": "139****4321",
        "contactEmail": "z***@example.com",
        "id_number": "110***********123X",
        "address": "北京市朝阳区***",
        "bank_card": "**** **** **** 2444",
        "order_no": "2024051312345678",
        "note": "call back on 138****5678",
        "history": [
            {"mobile": "+86 138****5678", "text": "email me at l***@example.com"},
            "plain 136****5678",
        ],
        "site": {"home_address": "上海市浦东新区***", "floor": 3},
        "vip": True,
        "tags": ("a", "b"),
    }
    assert record["contact"] == "13812345678"  # the input is not modified
    assert mask_mapping(masked) == masked  # idempotent


def test_contact_field_holding_a_name_or_email_is_masked_sensibly_PRIV_1() -> None:
    assert mask_mapping({"contact": "王五"}) == {"contact": "王五"}
    assert mask_mapping({"contact": "wang@example.com"}) == {"contact": "w***@example.com"}
    assert mask_mapping({"contact": "王五 13812345678"}) == {"contact": "王五 138****5678"}


# -- logs -------------------------------------------------------------------------


def test_masking_filter_masks_phone_in_log_record_PRIV_1(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("aftersales.test_privacy.filter")
    masking = MaskingFilter()
    logger.addFilter(masking)
    try:
        with caplog.at_level(logging.INFO, logger="aftersales"):
            logger.info("customer %s called from %s", "张三", "13812345678")
            logger.info({"contact": "13812345678"})
            try:
                raise ValueError("bad card 6222600260001072444")
            except ValueError:
                logger.exception("refund failed for %s", "13812345678")
    finally:
        logger.removeFilter(masking)
    assert "13812345678" not in caplog.text
    assert "6222600260001072444" not in caplog.text
    assert "customer 张三 called from 138****5678" in caplog.text
    assert "**** **** **** 2444" in caplog.text  # in the traceback text
    assert [r.getMessage() for r in caplog.records][:2] == [
        "customer 张三 called from 138****5678",
        "{'contact': '138****5678'}",
    ]


def test_install_log_masking_covers_child_loggers_PRIV_1(caplog: pytest.LogCaptureFixture) -> None:
    child = logging.getLogger("aftersales.test_privacy.child.deeper")
    other = logging.getLogger("test_privacy_unrelated")
    prefect_logger = logging.getLogger("prefect.flow_runs")
    # Prefect's own logging config (applied once prefect runs anything in this process)
    # may stop its loggers propagating to the root: listen on the logger itself.
    saved = (prefect_logger.level, prefect_logger.propagate)
    prefect_logger.addHandler(caplog.handler)
    prefect_logger.setLevel(logging.INFO)
    prefect_logger.propagate = False
    install_log_masking(("aftersales", "prefect"))
    try:
        with caplog.at_level(logging.INFO):
            child.info("phone %s id %s", "13812345678", "11010519900307123X")
            prefect_logger.info("contact 13912345678")
            other.info("untouched 13812345678")
    finally:
        uninstall_log_masking(("aftersales", "prefect"))
        prefect_logger.removeHandler(caplog.handler)
        prefect_logger.setLevel(saved[0])
        prefect_logger.propagate = saved[1]
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "phone 138****5678 id 110***********123X",
        "contact 139****5678",
        "untouched 13812345678",  # only the named hierarchies are masked
    ]


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("我住在北京市朝阳区建国路88号1201室，请上门", "我住在北京市朝阳区***，请上门"),
        ("上海市浦东新区世纪大道100号3号楼2单元501", "上海市浦东新区***"),
        ("I live at 221B Baker Street, London", "I live at ***, London"),
        ("地铁2号线 is not an address", "地铁2号线 is not an address"),
    ],
)
def test_street_addresses_in_free_text_are_masked_below_the_district_PRIV_1(
    text: str, masked: str
) -> None:
    assert mask_text(text) == masked
    assert mask_text(masked) == masked  # idempotent


def test_an_address_in_a_description_never_reaches_the_sync_group_unmasked_PRIV_1() -> None:
    from aftersales.notify import render

    msg = render(
        "sync_group_post",
        {"ticket_id": "TK-1", "description": "上门地址：杭州市西湖区文三路477号华星科技大厦9楼"},
    )
    assert "文三路477号" not in msg.body and "杭州市西湖区***" in msg.body


def test_the_sync_group_post_masks_the_customers_name_but_a_message_to_a_person_keeps_it_PRIV_1() -> (
    None
):
    from aftersales.notify import render

    ctx = {"ticket_id": "TK1", "channel": "phone", "category": "B", "priority": "urgent",
           "owner_team": "hotline", "handler": "小周", "customer_name": "李娜",
           "contact": "13987654321", "product_model": "X200", "description": "no power"}  # fmt: skip
    group = render("sync_group_post", ctx)
    assert "李娜" not in group.body and "李*" in group.body
    assert "13987654321" not in group.body and "139****4321" in group.body
