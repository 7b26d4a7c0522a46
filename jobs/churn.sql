-- Score one day's snapshot. $ds is bound as a typed DATE parameter, never spliced into the text.
SELECT
    customer_id,
    region,
    predict(
        'churn',
        tenure_months, monthly_charges, total_charges, support_calls_30d,
        num_products, contract_months, days_since_last_login, avg_session_minutes,
        payment_failures_90d, is_autopay, age, discount_pct
    ) AS churn_probability,
    ds
FROM features
WHERE ds = $ds
