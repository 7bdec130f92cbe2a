"""PII values Presidio's pattern recognizers detect (valid checksums; an SSN not on Presidio's invalid list)."""

EMAIL = "john.smith@example.com"
PHONE = "+1 415-555-0100"
CARD = "4111 1111 1111 1111"
SSN = "536-22-1245"
IBAN = "GB82 WEST 1234 5698 7654 32"
IP = "192.168.10.20"
ALL = {"EMAIL_ADDRESS": EMAIL, "PHONE_NUMBER": PHONE, "CREDIT_CARD": CARD, "US_SSN": SSN, "IBAN_CODE": IBAN,
       "IP_ADDRESS": IP}
PROMPT = (f"Contact {EMAIL} or call {PHONE}. My card is {CARD}, SSN {SSN}, IBAN {IBAN}, "
          f"and the server is at {IP}.")
